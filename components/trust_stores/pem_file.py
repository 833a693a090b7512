"""A load balancer that trusts the appliance root CA through a PEM bundle file.

This is the trust store of NGINX (`proxy_ssl_trusted_certificate`) and HAProxy (`ca-file`):
one file of concatenated PEM certificates on the machine that runs `pulumi up`, typically a
config directory that a configuration-management tool or a volume mount ships to the proxy.

`PemTrustBundle` is a dynamic resource that owns that file: it writes it atomically, reads it
back on refresh so that an edit or a deletion on disk shows up as drift, and removes it on
destroy. `declare_trust` is the `trust_stores` entry point for `kind: pem_file`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    UpdateResult,
)

from components import pki
from components.dynamic import TrustProvider, is_unknown
from components.naming import Names
from components.trust_stores import ClusterTrust, TrustStoreOutputs

__all__ = ["PemTrustBundle", "PemTrustBundleProvider", "check", "declare_trust"]


def _certificate_sha256s(bundle_pem: str, load_balancer: str) -> list[str]:
    """SHA-256 fingerprints of the certificates in `bundle_pem`, in file order.

    `pki.load_bundle` refuses anything but certificates (a private key above all: this file
    is world-readable) and raises a CertificateError (a ValueError) naming the load balancer.
    """
    source = f"the trust bundle of load balancer {load_balancer}"
    return [pki.sha256_fingerprint(cert) for cert in pki.load_bundle(bundle_pem, source)]


def _observed_sha256s(bundle_pem: str, load_balancer: str) -> list[str]:
    """Fingerprints of what is actually in a file, or [] when it no longer parses (drift)."""
    try:
        return _certificate_sha256s(bundle_pem, load_balancer)
    except ValueError:
        return []


class PemTrustBundleProvider(TrustProvider):
    """Check, diff, create, read, update and delete the PEM bundle file.

    Holds no state of its own (pickled by reference into `__provider`); every method works from
    its arguments. A changed `path` replaces the resource: the new file is written first and
    the old one removed afterwards (Pulumi's create-before-delete default), so the proxy never
    points at a missing file while both paths are in its configuration.
    """

    replace_keys = ("path",)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        load_balancer = news.get("load_balancer")
        if is_unknown(load_balancer):
            load_balancer = "?"
        elif not isinstance(load_balancer, str) or not load_balancer:
            failures.append(
                CheckFailure("load_balancer", "the load balancer name is empty; expected its name.")
            )
            load_balancer = "?"
        lb = load_balancer

        path = news.get("path")
        if not is_unknown(path):
            if not isinstance(path, str) or not path:
                failures.append(
                    CheckFailure(
                        "path",
                        f"load balancer {lb}: the PEM bundle path is empty; "
                        "expected an absolute file path.",
                    )
                )
            elif not os.path.isabs(path):
                failures.append(
                    CheckFailure(
                        "path",
                        f"load balancer {lb}: the PEM bundle path {path!r} is relative; "
                        "expected an absolute file path.",
                    )
                )
            elif not os.path.isdir(os.path.dirname(path)):
                # Said while planning, so `pulumi preview` shows it and `up` applies nothing;
                # _write_atomically says it again should the directory vanish before the write.
                failures.append(
                    CheckFailure(
                        "path",
                        f"load balancer {lb}: the directory {os.path.dirname(path)} of the PEM "
                        f"bundle path {path} does not exist; expected an existing directory "
                        "(this program does not create it).",
                    )
                )

        bundle_pem = news.get("bundle_pem")
        # In preview the bundle may still be unknown (it comes from the appliance): check it
        # when it is known, which `up` always is.
        if not is_unknown(bundle_pem):
            try:
                _certificate_sha256s(bundle_pem if isinstance(bundle_pem, str) else "", lb)
            except ValueError as error:
                failures.append(CheckFailure("bundle_pem", str(error)))
        return CheckResult(news, failures)

    def create(self, props: dict[str, Any]) -> CreateResult:
        path = props["path"]
        _write_atomically(path, props["bundle_pem"], props["load_balancer"])
        return CreateResult(path, _outputs(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        _write_atomically(news["path"], news["bundle_pem"], news["load_balancer"])
        return UpdateResult(_outputs(news))

    def diff(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """The declared inputs, and the file as it is on disk now.

        The file is local and cheap to read, so the diff looks at it: an edited or deleted
        bundle shows in `pulumi preview` without a refresh, as the nodes' certificates do,
        and the engine's refresh check (refreshed outputs against stored inputs) agrees.
        """
        result = super().diff(id_, olds, news)
        if result.changes or is_unknown(news.get("bundle_pem")) or is_unknown(news.get("path")):
            return result
        on_disk = _read_bundle(str(news["path"]))
        return DiffResult(
            changes=on_disk != news.get("bundle_pem"), replaces=[], delete_before_replace=False
        )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        content = _read_bundle(id_)
        if content is None:
            # An empty id tells the engine the resource is gone; the next `up` recreates it.
            return ReadResult("", {})
        # Report what is on disk, not what was declared, so `pulumi refresh` shows the edit
        # and the next `up` rewrites the file (diff compares the declaration with these).
        outs = {
            "path": id_,
            "bundle_pem": content,
            "load_balancer": props.get("load_balancer"),
            "sha256s": _observed_sha256s(content, props.get("load_balancer") or "?"),
        }
        return ReadResult(id_, outs)

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        # Already gone is the state we want.
        with contextlib.suppress(FileNotFoundError):
            os.remove(id_)


def _read_bundle(path: str) -> str | None:
    """The bundle file's text as it is now, or None when there is no file."""
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None


def _outputs(props: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": props["path"],
        "bundle_pem": props["bundle_pem"],
        "load_balancer": props["load_balancer"],
        "sha256s": _certificate_sha256s(props["bundle_pem"], props["load_balancer"]),
    }


def _write_atomically(path: str, bundle_pem: str, load_balancer: str) -> None:
    """Replace `path` with `bundle_pem` so that a reader sees the old file or the new one.

    Temp file in the same directory (os.replace is atomic only within one file system),
    fsync of the data before the rename and of the directory after it, so that a crash
    leaves either version on disk, never an empty or half-written trust store.
    """
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"load balancer {load_balancer}: cannot write the trust bundle {path}: the "
            f"directory {directory} does not exist; expected an existing directory "
            "(this program does not create it)."
        )
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(bundle_pem.encode())
                handle.flush()
                os.fsync(handle.fileno())
            # The proxy's worker user must be able to read it; CA certificates are public.
            os.chmod(temporary, 0o644)  # noqa: S103
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise
    except OSError as error:
        raise OSError(
            f"load balancer {load_balancer}: cannot write the trust bundle {path}: "
            f"{error.strerror or error}; the file there, if any, is unchanged (expected a "
            "path this user can write)."
        ) from error
    # Make the rename itself durable: until the directory entry is on disk, a crash could
    # bring back the old file after the proxy was already told to reload the new one.
    directory_descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_descriptor)
    finally:
        os.close(directory_descriptor)


class PemTrustBundle(pulumi.dynamic.Resource, module="trust_stores", name="PemTrustBundle"):
    """The PEM bundle file a proxy reads its trusted roots from; its id is the absolute path."""

    path: pulumi.Output[str]
    bundle_pem: pulumi.Output[str]
    load_balancer: pulumi.Output[str]
    sha256s: pulumi.Output[list[str]]  # what the file holds, as written or as refreshed

    def __init__(
        self,
        resource_name: str,
        *,
        path: pulumi.Input[str],
        bundle_pem: pulumi.Input[str],
        load_balancer: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props = {
            "path": path,
            "bundle_pem": bundle_pem,
            "load_balancer": load_balancer,
            "sha256s": None,  # output only
        }
        super().__init__(PemTrustBundleProvider(), resource_name, props, opts)


def check(_load_balancer: Any, _cluster: Any) -> list[str]:
    """Nothing beyond what the settings and the provider's check already refuse."""
    return []


def declare_trust(
    load_balancer: Any, trust: ClusterTrust, parent: pulumi.Resource
) -> TrustStoreOutputs:
    """Declare the bundle file of `load_balancer` holding every root CA of the cluster."""
    # Relative paths in the stack file mean "relative to the project", which is the
    # working directory of the program; state gets the absolute path (also the id).
    path = os.path.abspath(load_balancer.path)
    names = Names(load_balancer.name, load_balancer.previous_name)
    bundle = PemTrustBundle(
        names("trust-bundle"),
        path=path,
        bundle_pem=trust.root_ca_bundle_pem,
        load_balancer=load_balancer.name,
        opts=names.options("trust-bundle", pulumi.ResourceOptions(parent=parent)),
    )
    # Preview must show the fingerprints this load balancer will trust. In preview the engine
    # reports a resource's inputs as its state, so `bundle.sha256s` (output only) is unknown
    # until `up` writes the file. The fingerprints come from the trust's root_ca_sha256s
    # instead, which are known in preview and describe exactly the bundle written (create
    # and update write `root_ca_bundle_pem` byte for byte). Combining them with `bundle.path`
    # (an input, so known in preview) keeps the dependency on the file: anything exported
    # from these outputs waits for the file to be written during `up`.
    trusted_sha256s = pulumi.Output.all(bundle.path, trust.root_ca_sha256s).apply(
        lambda values: _as_list(values[1])
    )
    # `preview --diff` shows an update of this file without property lines (no detailed diff
    # from the Python host): say what is in the file and what it will hold.
    on_disk = _read_bundle(path)
    if on_disk is not None:
        pulumi.Output.from_input(trust.root_ca_sha256s).apply(
            lambda wanted: _warn_if_different(load_balancer.name, path, on_disk, wanted, bundle)
        )
    return TrustStoreOutputs(
        trusted_sha256s=trusted_sha256s,
        object_names=bundle.path.apply(lambda written: [written]),
    )


def _warn_if_different(
    load_balancer: str, path: str, on_disk: str, wanted: Sequence[str], bundle: PemTrustBundle
) -> None:
    found = _observed_sha256s(on_disk, load_balancer)
    if found == list(wanted):
        return
    holds = ", ".join(found) if found else "no certificate this program can read"
    pulumi.log.warn(
        f"load balancer {load_balancer}: the trust bundle {path} holds {holds}; this stack "
        f"makes it trust {', '.join(wanted)}.",
        resource=bundle,
    )


def _as_list(sha256s: Sequence[str]) -> list[str]:
    return [str(sha256) for sha256 in sha256s]
