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
import stat
import tempfile
import time
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

__all__ = [
    "PemTrustBundle",
    "PemTrustBundleProvider",
    "check",
    "declare_trust",
    "read_bundle_file",
]


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

    The program owns only the files it wrote: a file already at a new path is refused unless
    the stack adopts it (`adopt_existing_file`), a symlink at the path is never followed, and
    refresh stores only certificates, never other text it finds there.
    """

    replace_keys = ("path",)

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
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

        bundle_pem = news.get("bundle_pem")
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
            else:
                # Said while planning, so `pulumi preview` shows it and `up` applies nothing;
                # the write says it again should the path change before it.
                owned = olds.get("path") == path
                problem = _path_problem(
                    path, lb, owned, bool(news.get("adopt_existing_file")), bundle_pem
                )
                if problem:
                    failures.append(CheckFailure("path", problem))

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
        problem = _path_problem(
            path,
            props["load_balancer"],
            False,
            bool(props.get("adopt_existing_file")),
            props["bundle_pem"],
        )
        # A vanished directory is said by the write itself, as a FileNotFoundError.
        if problem and os.path.isdir(os.path.dirname(path)):
            raise ValueError(problem)
        _write_atomically(path, props["bundle_pem"], props["load_balancer"])
        return CreateResult(path, _outputs(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        problem = _path_problem(news["path"], news["load_balancer"], True, True, None)
        if problem and os.path.isdir(os.path.dirname(news["path"])):
            raise ValueError(problem)
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
        on_disk = _read_own_file(str(news["path"]))
        return DiffResult(
            changes=on_disk != news.get("bundle_pem"), replaces=[], delete_before_replace=False
        )

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        load_balancer = str(props.get("load_balancer") or "?")
        content = _read_own_file(id_)
        if content is None:
            # An empty id tells the engine the resource is gone; the next `up` recreates it.
            return ReadResult("", {})
        # Report what is on disk, not what was declared, so `pulumi refresh` shows the edit
        # and the next `up` rewrites the file (diff compares the declaration with these).
        # Only certificates ever reach state: anything else found there (a symlink, a private
        # key, any other text) is recorded as an empty bundle, which the next `up` replaces.
        declared = props.get("bundle_pem")
        if content != declared:
            try:
                content = pki.bundle_pem(pki.load_bundle(content, load_balancer))
            except ValueError:
                content = ""
        outs = {
            **{key: props[key] for key in ("adopt_existing_file",) if key in props},
            "path": id_,
            "bundle_pem": content,
            "load_balancer": props.get("load_balancer"),
            "sha256s": _observed_sha256s(content, load_balancer) if content else [],
        }
        return ReadResult(id_, outs)

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        # Only a regular file is ours to delete; a symlink or anything else that replaced it
        # is left alone. Already gone is the state we want.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISREG(os.lstat(id_).st_mode):
                os.remove(id_)


def _path_problem(
    path: str, load_balancer: str, owned: bool, adopt: bool, bundle_pem: Any
) -> str | None:
    """Why `path` may not be written, or None. `owned`: this stack wrote it before."""
    directory = os.path.dirname(path)
    where = f"load balancer {load_balancer}: the PEM bundle path {path}"
    if not os.path.isdir(directory):
        return (
            f"load balancer {load_balancer}: the directory {directory} of the PEM bundle path "
            f"{path} does not exist; expected an existing directory (this program does not "
            "create it)."
        )
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"{where} cannot be inspected ({error.strerror}); expected a writable path."
    if stat.S_ISLNK(info.st_mode):
        return (
            f"{where} is a symbolic link; this program never follows one (it could point at any "
            "file). Expected a regular file or no file there: remove the link, or point path "
            "at the real file."
        )
    if stat.S_ISDIR(info.st_mode):
        return f"{where} is a directory; expected the path of a file inside it."
    if not stat.S_ISREG(info.st_mode):
        return f"{where} is not a regular file; expected a regular file or no file there."
    if owned or adopt:
        return None
    if isinstance(bundle_pem, str) and _read_own_file(path) == bundle_pem:
        # Exactly what this stack would write: an earlier `up` wrote it and failed before
        # recording it (see _write_atomically). Taking it over changes nothing.
        return None
    return (
        f"{where} already holds a file that this stack did not write; it will not be replaced "
        "(nor deleted on destroy). Set adopt_existing_file: true on this load balancer to "
        "take it over (its file mode is kept), or choose another path."
    )


def read_bundle_file(path: str) -> str | None:
    """The bundle file as the load balancer would read it, read the way this program reads its
    own files (symlinks never followed): see _read_own_file. For read-only callers (audit)."""
    return _read_own_file(path)


def _read_own_file(path: str) -> str | None:
    """The text of the regular file at `path` (symlinks not followed), "" for anything that
    is not a regular file, None when there is nothing there."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError:
        # ELOOP (a symlink), EACCES, ...: nothing of it is read.
        return "" if os.path.lexists(path) else None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return ""
        return handle.read(_MAX_BUNDLE_BYTES).decode("utf-8", errors="replace")


_MAX_BUNDLE_BYTES = 1024 * 1024
# Temporary files of an interrupted write older than this are removed by the next write.
_STALE_TEMPORARY_SECONDS = 60.0


def _outputs(props: dict[str, Any]) -> dict[str, Any]:
    return {
        **{key: props[key] for key in ("adopt_existing_file",) if key in props},
        "path": props["path"],
        "bundle_pem": props["bundle_pem"],
        "load_balancer": props["load_balancer"],
        "sha256s": _certificate_sha256s(props["bundle_pem"], props["load_balancer"]),
    }


def _remove_stale_temporaries(directory: str, name: str) -> None:
    """Remove this program's temporary files for `name` left by an interrupted write."""
    prefix, now = f".{name}.", time.time()
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(info.st_mode) and now - info.st_mtime > _STALE_TEMPORARY_SECONDS:
                    os.remove(entry.path)


def _write_atomically(path: str, bundle_pem: str, load_balancer: str) -> None:
    """Replace `path` with `bundle_pem` so that a reader sees the old file or the new one.

    Temp file in the same directory (os.replace is atomic only within one file system),
    fsync of the data before the rename and of the directory after it, so that a crash
    leaves either version on disk, never an empty or half-written trust store. The rename
    replaces a directory entry and never follows a symlink; an existing file's mode is kept.
    """
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"load balancer {load_balancer}: cannot write the trust bundle {path}: the "
            f"directory {directory} does not exist; expected an existing directory "
            "(this program does not create it)."
        )
    _remove_stale_temporaries(directory, os.path.basename(path))
    mode = 0o644  # the proxy's worker user must be able to read it; CA certificates are public
    with contextlib.suppress(FileNotFoundError):
        info = os.lstat(path)
        if stat.S_ISREG(info.st_mode):
            mode = stat.S_IMODE(info.st_mode)
    try:
        descriptor, temporary = tempfile.mkstemp(
            prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory
        )
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(bundle_pem.encode())
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, mode)
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
        ) from None
    # Make the rename itself durable: until the directory entry is on disk, a crash could
    # bring back the old file after the proxy was already told to reload the new one.
    reason = ""
    try:
        directory_descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)
    except OSError as error:
        reason = error.strerror or type(error).__name__
    if reason:
        raise OSError(
            f"load balancer {load_balancer}: the new trust bundle is in place at {path} "
            f"(complete, and what proxies read from now on), but syncing its directory "
            f"failed ({reason}): after a crash of this machine the previous version could come "
            "back. Run `pulumi up` again; it finds the file as written and records it."
        )


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
        adopt_existing_file: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "path": path,
            "bundle_pem": bundle_pem,
            "load_balancer": load_balancer,
            "sha256s": None,  # output only
        }
        if adopt_existing_file:
            # Only when set: stacks from before this setting see no change in preview.
            props["adopt_existing_file"] = True
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
        adopt_existing_file=bool(getattr(load_balancer, "adopt_existing_file", False)),
        opts=names.options("trust-bundle", pulumi.ResourceOptions(parent=parent)),
    )
    # Preview must show the fingerprints this load balancer will trust. In preview the engine
    # reports a resource's inputs as its state, so `bundle.sha256s` (output only) is unknown
    # until `up` writes the file. The fingerprints come from the trust's root_ca_sha256s
    # instead, which are known in preview and describe exactly the bundle written (create
    # and update write `root_ca_bundle_pem` byte for byte). Reached through `bundle.path`
    # (an input, so known in preview), they keep the dependency on the file: anything
    # exported from them waits for the file to be written during `up`. One apply per load
    # balancer, no more: the SDK's cost grows with every output a program makes (README,
    # "Speed").
    trusted_sha256s = bundle.path.apply(lambda _written: trust.root_ca_sha256s)
    # `preview --diff` shows an update of this file without property lines (no detailed diff
    # from the Python host): say what is in the file and what it will hold.
    on_disk = _read_own_file(path)
    if on_disk is not None:
        pulumi.Output.from_input(trust.root_ca_sha256s).apply(
            lambda wanted: _warn_if_different(load_balancer.name, path, on_disk, wanted, bundle)
        )
    return TrustStoreOutputs(
        trusted_sha256s=trusted_sha256s,
        object_names=[path],  # the file is the object, its path known while planning
        written=[bundle],
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
