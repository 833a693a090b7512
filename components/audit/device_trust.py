"""What each load balancer trusts and checks, read from the device as it holds it, read-only.

* `pem_file`: the bundle file, read the way the program reads its own files (a symlink is
  never followed), parsed by `components.pki`.
* `f5`: over iControl REST with the program's verified client (`bigip_rest`): the server-SSL
  profile (`GET /mgmt/tm/ltm/profile/server-ssl/~P~name`: caFile, peerCertMode,
  authenticateName, untrustedCertResponseControl, expireCertResponseControl) and the CA
  certificate object it names (`GET /mgmt/tm/sys/file/ssl-cert/~P~name`). iControl REST does
  not hand out a certificate file's PEM; the object's `fingerprint` ("SHA256/<colon hex>")
  and `isBundle` are what it reports (fields of a captured BIG-IP 14.1 answer in
  CiscoTestAutomation/genieparser's bigip tests; shared/reference/f5-bigip.md). For a single
  certificate that fingerprint identifies the trusted root CA exactly. For a bundle it covers
  only one of its certificates, and the per-certificate listing (`bundle-certificates`) has no
  publicly documented shape, so the audit says it could not check, rather than guess.
  Only GETs are sent (and the token login and logout). The password comes from BIGIP_PASSWORD.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from components import pki
from components.settings import F5LoadBalancer, LoadBalancer, PemFileLoadBalancer
from components.trust_stores.bigip_rest import (
    BIGIP_PASSWORD_VARIABLE,
    BigipError,
    Management,
    open_session,
    tilde_path,
)
from components.trust_stores.pem_file import read_bundle_file

__all__ = ["DeviceTrust", "read_device_trust"]

_PROFILES = "/mgmt/tm/ltm/profile/server-ssl/"
_CERTIFICATES = "/mgmt/tm/sys/file/ssl-cert/"


@dataclass(frozen=True)
class DeviceTrust:
    """One load balancer's trust as the device holds it.

    `trusted_sha256s` are the root CAs it trusts; `trusted` holds those whose certificate the
    device gave us (a bundle file does; a BIG-IP only reports fingerprints). `checked_name` is
    the name the device itself checks in node certificates (F5 authenticate-name; "" when it
    checks none), or None where the device does not say (a bundle file: the program's model
    applies). `problems` are facts that make it refuse or not verify nodes (FAIL); `unknown`
    says why its trust could not be read at all.
    """

    load_balancer: str
    kind: str
    where: str
    trusted_sha256s: tuple[str, ...] = ()
    trusted: tuple[x509.Certificate, ...] = ()
    trusted_expiry: tuple[datetime, ...] = ()
    checked_name: str | None = None
    problems: tuple[str, ...] = ()
    unknown: str | None = None


def read_device_trust(lb: LoadBalancer) -> DeviceTrust:
    """What `lb` trusts; a device or file that cannot be read is said in `unknown`."""
    try:
        if isinstance(lb, PemFileLoadBalancer):
            return _read_pem_file(lb)
        if isinstance(lb, F5LoadBalancer):
            return _read_bigip(lb)
    except OSError as error:
        return DeviceTrust(
            lb.name, lb.kind, "?", unknown=f"load balancer {lb.name}: {error.strerror or error}."
        )
    return DeviceTrust(lb.name, lb.kind, "?", unknown=f"kind {lb.kind} cannot be audited yet.")


def _read_pem_file(lb: PemFileLoadBalancer) -> DeviceTrust:
    path = str(lb.path)
    trust = DeviceTrust(lb.name, lb.kind, path)
    content = read_bundle_file(path)
    if content is None:
        return _with(
            trust,
            problems=(
                f"load balancer {lb.name} trusts nothing yet: its bundle file {path} does not "
                "exist (`pulumi up` writes it).",
            ),
        )
    if content == "":
        info = _lstat(path)
        if info is not None and stat.S_ISREG(info.st_mode) and info.st_size == 0:
            return _with(
                trust, problems=(f"load balancer {lb.name} trusts nothing: {path} is empty.",)
            )
        return _with(
            trust,
            unknown=(
                f"load balancer {lb.name}: {path} is a symbolic link, not a regular file, or "
                "not readable; the audit does not follow it (nor does the program)."
            ),
        )
    source = f"the bundle file {path} of load balancer {lb.name}"
    try:
        certificates = pki.load_bundle(content, source)
    except pki.CertificateError as error:
        return _with(trust, problems=(f"{error} The load balancer cannot load it.",))
    return _with(
        trust,
        trusted_sha256s=tuple(pki.sha256_fingerprint(c) for c in certificates),
        trusted=tuple(certificates),
        trusted_expiry=tuple(c.not_valid_after_utc for c in certificates),
    )


def _read_bigip(lb: F5LoadBalancer) -> DeviceTrust:
    management = Management(
        address=lb.address,
        port=int(lb.port),
        username=lb.username,
        password_key=lb.password_key,
        ca_path=str(lb.management_ca_path)
        if lb.validate_management_certificate and lb.management_ca_path
        else "",
    )
    profile_path = lb.server_ssl_profile_path
    trust = DeviceTrust(lb.name, lb.kind, f"{management.where} {profile_path}")
    password = os.environ.get(BIGIP_PASSWORD_VARIABLE)
    if not password:
        return _with(
            trust,
            unknown=(
                f"load balancer {lb.name}: no BIG-IP password; set the {BIGIP_PASSWORD_VARIABLE} "
                "environment variable (the audit never decrypts stack secrets)."
            ),
        )
    try:
        with open_session(management, password) as bigip:
            profile = _get(bigip, _PROFILES + tilde_path(profile_path))
            if profile is None:
                return _with(
                    trust,
                    problems=(
                        f"load balancer {lb.name}: server-SSL profile {profile_path} does not "
                        f"exist on {management.where}, so nothing verifies the nodes.",
                    ),
                )
            ca_file = str(profile.get("caFile") or "none")
            ca_object = None
            if ca_file != "none":
                ca_object = _get(bigip, _CERTIFICATES + tilde_path(ca_file))
    except BigipError as error:
        return _with(trust, unknown=f"load balancer {lb.name}: {error}")
    problems = _profile_problems(lb.name, profile_path, profile)
    checked_name = str(profile.get("authenticateName") or "")
    checked_name = "" if checked_name == "none" else checked_name
    if ca_file == "none":
        problems.append(
            f"load balancer {lb.name}: profile {profile_path} has no CA file, so it trusts no "
            "root CA."
        )
        return _with(trust, problems=tuple(problems), checked_name=checked_name)
    if ca_object is None:
        problems.append(
            f"load balancer {lb.name}: the CA file {ca_file} of profile {profile_path} does not "
            "exist on the device, so it trusts no root CA."
        )
        return _with(trust, problems=tuple(problems), checked_name=checked_name)
    if str(ca_object.get("isBundle")) == "true":
        return _with(
            trust,
            problems=tuple(problems),
            checked_name=checked_name,
            unknown=(
                f"load balancer {lb.name}: the CA file {ca_file} is a bundle of several "
                "certificates, and iControl REST reports the fingerprint of only one of them; "
                "the audit does not guess the others (see them with `tmsh list sys file "
                f"ssl-cert {ca_file} bundle-certificates`)."
            ),
        )
    fingerprint = str(ca_object.get("fingerprint") or "")
    try:
        sha256 = pki.normalize_fingerprint(
            fingerprint.removeprefix("SHA256/"), f"the fingerprint of {ca_file}"
        )
    except pki.CertificateError:
        return _with(
            trust,
            problems=tuple(problems),
            checked_name=checked_name,
            unknown=(
                f"load balancer {lb.name}: the CA file {ca_file} reports no SHA-256 fingerprint "
                f"(got {fingerprint[:80]!r}); expected SHA256/<64 hex digits>."
            ),
        )
    expiry: tuple[datetime, ...] = ()
    if isinstance(ca_object.get("expirationDate"), int | float):
        expiry = (datetime.fromtimestamp(float(ca_object["expirationDate"]), UTC),)
    return _with(
        trust,
        trusted_sha256s=(sha256,),
        trusted_expiry=expiry,
        checked_name=checked_name,
        problems=tuple(problems),
    )


def _profile_problems(name: str, profile_path: str, profile: dict[str, Any]) -> list[str]:
    """The profile settings without which the BIG-IP does not verify what it connects to (the
    values the program declares: shared/reference/f5-bigip.md, "Recommended validation")."""
    problems = []
    expected = (
        ("peerCertMode", "require", "does not require a valid node certificate"),
        ("untrustedCertResponseControl", "drop", "accepts certificates it cannot verify"),
        ("expireCertResponseControl", "drop", "accepts expired certificates"),
    )
    for field, wanted, meaning in expected:
        found = str(profile.get(field) or "(not set)")
        if found != wanted:
            problems.append(
                f"load balancer {name}: profile {profile_path} {meaning} ({field} {found}; "
                f"expected {wanted})."
            )
    if str(profile.get("authenticateName") or "none") == "none":
        problems.append(
            f"load balancer {name}: profile {profile_path} checks no name (authenticateName "
            "none), so any certificate from a trusted CA is accepted for this cluster."
        )
    return problems


def _get(bigip: Any, path: str) -> dict[str, Any] | None:
    """The object at `path`, or None when the device answers 404 (it does not exist)."""
    try:
        found: dict[str, Any] = bigip.get(path)
    except BigipError as error:
        if error.status == 404:
            return None
        raise
    return found


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _with(trust: DeviceTrust, **changes: Any) -> DeviceTrust:
    return replace(trust, **changes)
