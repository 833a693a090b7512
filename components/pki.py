"""X.509 facts for the trust procedure: parse, fingerprint, judge CAs, check names, verify chains.

This is the only module that judges certificates. Every error is a ``CertificateError`` whose
text is a complete sentence for an operator that starts with the ``source`` phrase the caller
gave (for example "the root CA served by node ws1-a.corp.example"). No message ever contains
private key material: a pasted private key is recognised from its BEGIN line alone.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

__all__ = [
    "CertificateError",
    "CertificateSummary",
    "ChainVerificationError",
    "CommonNameMismatchError",
    "CorruptPemError",
    "DerNotPemError",
    "EmptyInputError",
    "ExpiredError",
    "FingerprintFormatError",
    "HtmlInsteadOfPemError",
    "MissingKeyCertSignError",
    "MissingSubjectAltNamesError",
    "MultipleCertificatesError",
    "NotACaError",
    "NotPemError",
    "NotYetValidError",
    "PrivateKeyNotCertificateError",
    "WeakKeyError",
    "WeakSignatureError",
    "bundle_pem",
    "check_ca",
    "check_ca_all",
    "check_server_names",
    "days_until_expiry",
    "load_bundle",
    "load_certificate",
    "name_covered",
    "normalize_fingerprint",
    "required_names",
    "sha256_fingerprint",
    "summarize",
    "to_pem",
    "verify_served_chain",
]

_MIN_RSA_BITS = 2048
_MIN_EC_BITS = 256
_KEY_REQUIREMENT = "at least RSA 2048 or EC P-256 is required"


# --------------------------------------------------------------------------- errors


class CertificateError(ValueError):
    """Base of every certificate problem; ``str(e)`` is a full operator sentence."""


class EmptyInputError(CertificateError):
    """Nothing (or only whitespace) was given where a certificate was expected."""


class HtmlInsteadOfPemError(CertificateError):
    """An HTML page (a login or error page) was served instead of a PEM certificate."""


class NotPemError(CertificateError):
    """No PEM certificate block at all: plain text, bare base64, binary, or PEM of another kind."""


class CorruptPemError(CertificateError):
    """A PEM certificate block is present but its END line is missing or its base64 is damaged."""


class PrivateKeyNotCertificateError(CertificateError):
    """A private key was given where a certificate was expected; the key is never echoed."""


class DerNotPemError(CertificateError):
    """The bytes are a DER (binary) certificate; PEM text was expected."""


class MultipleCertificatesError(CertificateError):
    """Several certificates were given where exactly one is expected."""


class NotACaError(CertificateError):
    """basicConstraints is missing or says CA=false."""


class MissingKeyCertSignError(CertificateError):
    """A CA whose keyUsage lacks keyCertSign (or has no keyUsage at all)."""


class NotYetValidError(CertificateError):
    """The certificate's notBefore lies in the future."""


class ExpiredError(CertificateError):
    """The certificate's notAfter lies in the past."""


class WeakKeyError(CertificateError):
    """RSA below 2048 bits, an EC curve smaller than P-256, DSA, or another key type."""


class WeakSignatureError(CertificateError):
    """Signed with SHA-1 or MD5 (or an algorithm that cannot be identified)."""


class CommonNameMismatchError(CertificateError):
    """The subject Common Name is not the service FQDN."""

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_cn_error, (str(self), self.expected, self.actual))


class MissingSubjectAltNamesError(CertificateError):
    """Some required DNS names are not covered by any DNS Subject Alternative Name."""

    def __init__(self, message: str, *, missing: tuple[str, ...]) -> None:
        super().__init__(message)
        self.missing = missing

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_san_error, (str(self), self.missing))


class ChainVerificationError(CertificateError):
    """A served chain does not verify for its host name against the trusted root CAs."""


class FingerprintFormatError(CertificateError):
    """Text that is not a SHA-256 fingerprint (32 bytes in hex)."""


# Keyword-only attributes would otherwise be lost when an error is pickled, e.g. by a
# dynamic provider process or a multiprocessing test runner.
def _rebuild_cn_error(message: str, expected: str, actual: str) -> CommonNameMismatchError:
    return CommonNameMismatchError(message, expected=expected, actual=actual)


def _rebuild_san_error(message: str, missing: tuple[str, ...]) -> MissingSubjectAltNamesError:
    return MissingSubjectAltNamesError(message, missing=missing)


# --------------------------------------------------------------------------- parsing

_PRIVATE_KEY_LINE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
_PEM_MARKER = re.compile(r"-----(BEGIN|END) ([A-Z0-9 ]+?)-----")
_CERTIFICATE_LABELS = frozenset({"CERTIFICATE", "X509 CERTIFICATE"})
_HTML_HINT = re.compile(r"<\s*(?:!doctype\s+html|html|head|body|title|meta|form|script)\b", re.I)
_BARE_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


def load_certificate(data: str | bytes, source: str) -> x509.Certificate:
    """Parse exactly one PEM certificate."""
    certs = load_bundle(data, source)
    if len(certs) != 1:
        found = "; ".join(_describe(c) for c in certs)
        raise MultipleCertificatesError(
            f"{source} contains {len(certs)} certificates, but exactly one is expected "
            f"(found: {found})."
        )
    return certs[0]


def load_bundle(data: str | bytes, source: str) -> list[x509.Certificate]:
    """Parse one or more PEM certificates, keeping their order."""
    text = _as_text(data, source)
    if _PRIVATE_KEY_LINE.search(text):
        raise PrivateKeyNotCertificateError(
            f"{source} contains a private key; only the certificate is expected (paste the "
            "-----BEGIN CERTIFICATE----- block, never the private key, and treat this key "
            "as exposed if it was shared)."
        )
    blocks = _pem_blocks(text, source)
    if not blocks:
        raise _no_pem_error(text, source)
    other = sorted({label for label, _ in blocks if label not in _CERTIFICATE_LABELS})
    if other:
        kinds = ", ".join(other)
        raise NotPemError(
            f"{source} contains a PEM block of another kind ({kinds}); only "
            "-----BEGIN CERTIFICATE----- blocks are expected."
        )
    certs = []
    for position, (_, body) in enumerate(blocks, start=1):
        certs.append(_decode_block(body, position, len(blocks), source))
    return certs


def _as_text(data: str | bytes, source: str) -> str:
    if isinstance(data, bytes):
        if not data.strip():
            raise _empty_error(source)
        if b"-----BEGIN" not in data:
            try:
                x509.load_der_x509_certificate(data)
            except ValueError:
                pass
            else:
                raise DerNotPemError(
                    f"{source} is a DER (binary) certificate, but PEM text is expected; "
                    "convert it with: openssl x509 -inform der -in cert.der -out cert.pem."
                )
        # PEM is ASCII: undecodable bytes outside the PEM blocks (or in an HTML page) are
        # harmless, but bytes with neither are binary data of some other kind.
        text = data.decode("utf-8", errors="replace")
        if "\ufffd" in text and "-----BEGIN" not in text and not _HTML_HINT.search(text):
            raise NotPemError(
                f"{source} is binary data that is neither a PEM nor a DER certificate; "
                "a PEM certificate (-----BEGIN CERTIFICATE-----) is expected."
            )
    else:
        text = data
    text = text.lstrip("\ufeff")
    if not text.strip():
        raise _empty_error(source)
    return text


def _empty_error(source: str) -> EmptyInputError:
    return EmptyInputError(
        f"{source} is empty; a PEM certificate (-----BEGIN CERTIFICATE----- ... "
        "-----END CERTIFICATE-----) is expected."
    )


def _no_pem_error(text: str, source: str) -> CertificateError:
    if _HTML_HINT.search(text[:4096]):
        return HtmlInsteadOfPemError(
            f"{source} is an HTML page, not a PEM certificate (a login or error page was "
            "served instead of the CA)."
        )
    if _BARE_BASE64.fullmatch(text):
        try:
            x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
        except (ValueError, binascii.Error):
            pass
        else:
            return NotPemError(
                f"{source} is base64 certificate data without its -----BEGIN CERTIFICATE----- "
                "and -----END CERTIFICATE----- lines; paste the whole PEM block including them."
            )
    return NotPemError(
        f"{source} is not a PEM certificate: no -----BEGIN CERTIFICATE----- line was found."
    )


def _pem_blocks(text: str, source: str) -> list[tuple[str, str]]:
    """Return (label, base64 body) for each BEGIN/END pair; text outside blocks is ignored."""
    blocks: list[tuple[str, str]] = []
    open_label: str | None = None
    body_start = 0
    for marker in _PEM_MARKER.finditer(text):
        kind, label = marker.group(1), marker.group(2)
        if kind == "BEGIN":
            if open_label is not None:
                raise _missing_end_error(open_label, len(blocks) + 1, source)
            open_label, body_start = label, marker.end()
        elif open_label is None or label != open_label:
            raise CorruptPemError(
                f"{source} has an unexpected -----END {label}----- line without a matching "
                "BEGIN line; the PEM text is damaged."
            )
        else:
            blocks.append((label, text[body_start : marker.start()]))
            open_label = None
    if open_label is not None:
        raise _missing_end_error(open_label, len(blocks) + 1, source)
    return blocks


def _missing_end_error(label: str, position: int, source: str) -> CorruptPemError:
    return CorruptPemError(
        f"{source} has a -----BEGIN {label}----- line (block {position}) without its "
        f"-----END {label}----- line; the text was cut off or altered when it was copied."
    )


def _decode_block(body: str, position: int, count: int, source: str) -> x509.Certificate:
    where = "its certificate" if count == 1 else f"certificate {position} of {count}"
    # A PEM pasted into YAML or JSON sometimes keeps literal "\n" escapes; they are layout,
    # not data, and the DER parse below still checks every byte.
    compact = "".join(body.replace("\\n", "\n").split())
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise CorruptPemError(
            f"{source} has damaged base64 in {where} (invalid characters or a truncated "
            "line); copy the PEM block again, from BEGIN to END."
        ) from None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        raise CorruptPemError(
            f"{source} has a PEM block whose content is not a valid X.509 certificate "
            f"({where} is truncated or corrupted); copy the PEM block again, from BEGIN to END."
        ) from None
    # Extensions are decoded lazily; decode them now so that a malformed one is reported
    # here, in parsing terms, instead of surfacing later from a check as a traceback.
    try:
        cert.extensions  # noqa: B018
    except (ValueError, x509.DuplicateExtension):
        raise CorruptPemError(
            f"{source} has malformed X.509 extensions in {where}; a well-formed certificate "
            "is expected."
        ) from None
    return cert


# --------------------------------------------------------------------------- encoding


def to_pem(cert: x509.Certificate) -> str:
    """PEM text of one certificate, ending in a newline."""
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def bundle_pem(certs: Iterable[x509.Certificate]) -> str:
    """Concatenated PEM, each certificate once (by SHA-256 fingerprint), first occurrence wins."""
    seen: set[bytes] = set()
    parts: list[str] = []
    for cert in certs:
        digest = cert.fingerprint(hashes.SHA256())
        if digest not in seen:
            seen.add(digest)
            parts.append(to_pem(cert))
    return "".join(parts)


def sha256_fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint as consoles and openssl show it: upper-case, colon-separated."""
    return _colon_hex(cert.fingerprint(hashes.SHA256()))


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{byte:02X}" for byte in digest)


_FINGERPRINT_PREFIX = re.compile(r"^(?:sha-?256)(?:\s*fingerprint)?\s*[:=]?\s*", re.I)
_FINGERPRINT_SEPARATORS = re.compile(r"[:\s]")
_HEX = re.compile(r"[0-9A-Fa-f]*")


def normalize_fingerprint(text: str, source: str) -> str:
    """Canonical "AB:12:..." form of a SHA-256 fingerprint written in any common style."""
    shown = text.strip()
    # Echo only what can be a mistyped fingerprint, never a long paste such as a PEM block.
    echo = f"{shown!r}, which" if len(shown) <= 100 and "-----" not in shown else "text that"
    candidate = _FINGERPRINT_PREFIX.sub("", text.strip(), count=1)
    digits = _FINGERPRINT_SEPARATORS.sub("", candidate)
    expected = (
        "a SHA-256 fingerprint is 32 bytes written as 64 hex digits, optionally separated by "
        "colons or spaces, e.g. AB:12:...:EF"
    )
    if not digits:
        raise FingerprintFormatError(f"{source} is empty; {expected}.")
    if not _HEX.fullmatch(digits):
        raise FingerprintFormatError(
            f"{source} is {echo} contains characters that are not hex digits; {expected}."
        )
    if len(digits) != 64:
        hint = ""
        if len(digits) == 40:
            hint = " (this looks like a SHA-1 thumbprint; use the SHA-256 fingerprint)"
        raise FingerprintFormatError(f"{source} has {len(digits)} hex digits{hint}; {expected}.")
    return _colon_hex(bytes.fromhex(digits))


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class CertificateSummary:
    """What an operator needs to recognise a certificate, in plain values."""

    subject: str
    issuer: str
    serial: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    key_type: str
    key_size: int
    sans: tuple[str, ...]
    sha256: str


def summarize(cert: x509.Certificate) -> CertificateSummary:
    """Plain-value summary; ``sans`` holds DNS names, then IP addresses, as written."""
    key_type, key_size, _ = _key_facts(cert)
    serial = f"{cert.serial_number:X}"
    if len(serial) % 2:
        serial = "0" + serial
    return CertificateSummary(
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=serial,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_size=key_size,
        sans=_dns_sans(cert) + _ip_sans(cert),
        sha256=sha256_fingerprint(cert),
    )


def days_until_expiry(cert: x509.Certificate, now: datetime.datetime | None = None) -> int:
    """Whole days until notAfter, rounded down; negative once expired."""
    return (cert.not_valid_after_utc - _utc(now)) // datetime.timedelta(days=1)


def _utc(now: datetime.datetime | None) -> datetime.datetime:
    """The given moment in UTC (a naive one is taken as UTC), or the current time."""
    if now is None:
        return datetime.datetime.now(datetime.UTC)
    if now.tzinfo is None:
        return now.replace(tzinfo=datetime.UTC)
    return now.astimezone(datetime.UTC)


_NIST_CURVES = {
    "secp192r1": "P-192",
    "secp224r1": "P-224",
    "secp256r1": "P-256",
    "secp384r1": "P-384",
    "secp521r1": "P-521",
}


def _key_facts(cert: x509.Certificate) -> tuple[str, int, str]:
    """(key type, size in bits, how to name it in a sentence)."""
    try:
        key = cert.public_key()
    except (UnsupportedAlgorithm, ValueError):
        return "unsupported", 0, "unsupported"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, f"RSA {key.key_size}-bit"
    if isinstance(key, ec.EllipticCurvePublicKey):
        curve = _NIST_CURVES.get(key.curve.name, key.curve.name)
        return "EC", key.curve.key_size, f"EC {curve}"
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, f"DSA {key.key_size}-bit"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 448, "Ed448"
    name = type(key).__name__.removesuffix("PublicKey") or "unknown"
    return name, 0, name


def _describe(cert: x509.Certificate) -> str:
    """Short identity for messages: the subject, or the fingerprint when it has none."""
    subject = cert.subject.rfc4514_string()
    return subject or f"SHA-256 {sha256_fingerprint(cert)}"


def _iso(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(delta: datetime.timedelta) -> str:
    days = delta // datetime.timedelta(days=1)
    if days < 1:
        return "less than a day"
    return "1 day" if days == 1 else f"{days} days"


# --------------------------------------------------------------------------- CA judgement


def check_ca(cert: x509.Certificate, source: str, now: datetime.datetime | None = None) -> None:
    """Raise the first failing rule: CA flag, keyCertSign, validity, key, signature."""
    problems = check_ca_all(cert, source, now)
    if problems:
        raise problems[0]


def check_ca_all(
    cert: x509.Certificate, source: str, now: datetime.datetime | None = None
) -> list[CertificateError]:
    """Every failing rule, in the order check_ca applies them."""
    when = _utc(now)
    problems: list[CertificateError] = []
    for rule in (_ca_flag, _key_cert_sign):
        problem = rule(cert, source)
        if problem is not None:
            problems.append(problem)
    validity = _validity(cert, source, when)
    if validity is not None:
        problems.append(validity)
    for rule in (_key_strength, _signature_strength):
        problem = rule(cert, source)
        if problem is not None:
            problems.append(problem)
    return problems


def _ca_flag(cert: x509.Certificate, source: str) -> CertificateError | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return NotACaError(
            f"{source} ({_describe(cert)}) is not a CA certificate: it has no basicConstraints "
            "extension, and CA=true is expected (was a server certificate given instead of "
            "the root CA?)."
        )
    if not constraints.ca:
        return NotACaError(
            f"{source} ({_describe(cert)}) is not a CA certificate: basicConstraints says "
            "CA=false, and CA=true is expected (was a server certificate given instead of "
            "the root CA?)."
        )
    return None


def _key_cert_sign(cert: x509.Certificate, source: str) -> CertificateError | None:
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return MissingKeyCertSignError(
            f"{source} ({_describe(cert)}) has no keyUsage extension; a CA must have keyUsage "
            "keyCertSign to be accepted as an issuer of server certificates."
        )
    if not usage.key_cert_sign:
        return MissingKeyCertSignError(
            f"{source} ({_describe(cert)}) has keyUsage without keyCertSign; a CA must have "
            "keyCertSign to be accepted as an issuer of server certificates."
        )
    return None


def _validity(
    cert: x509.Certificate, source: str, when: datetime.datetime
) -> CertificateError | None:
    phrase = _validity_phrase(cert, when)
    if phrase is None:
        return None
    if when < cert.not_valid_before_utc:
        return NotYetValidError(
            f"{source} ({_describe(cert)}) is not valid yet: {phrase}; check the clocks of "
            "the appliance and of this machine."
        )
    return ExpiredError(
        f"{source} ({_describe(cert)}) {phrase}; a currently valid certificate is expected."
    )


def _validity_phrase(cert: x509.Certificate, when: datetime.datetime) -> str | None:
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    if when < not_before:
        return f"it becomes valid on {_iso(not_before)} (in {_days(not_before - when)})"
    if when > not_after:
        return f"expired on {_iso(not_after)} ({_days(when - not_after)} ago)"
    return None


def _key_strength(cert: x509.Certificate, source: str) -> CertificateError | None:
    key_type, key_size, spoken = _key_facts(cert)
    strong = (key_type == "RSA" and key_size >= _MIN_RSA_BITS) or (
        key_type == "EC" and key_size >= _MIN_EC_BITS
    )
    if strong:
        return None
    article = "a" if key_type == "DSA" else "an"
    return WeakKeyError(
        f"{source} ({_describe(cert)}) uses {article} {spoken} key; {_KEY_REQUIREMENT}."
    )


def _signature_strength(cert: x509.Certificate, source: str) -> CertificateError | None:
    try:
        digest = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return WeakSignatureError(
            f"{source} ({_describe(cert)}) is signed with an unrecognised algorithm (OID "
            f"{cert.signature_algorithm_oid.dotted_string}); a SHA-256 or stronger signature "
            "is expected."
        )
    if isinstance(digest, hashes.SHA1 | hashes.MD5):
        label = "SHA-1" if isinstance(digest, hashes.SHA1) else "MD5"
        return WeakSignatureError(
            f"{source} ({_describe(cert)}) is signed with {label}, which is broken; a SHA-256 "
            "or stronger signature is expected."
        )
    return None


# --------------------------------------------------------------------------- names


def _normal_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def required_names(
    service_fqdn: str,
    node_fqdns: Sequence[str],
    passthrough: bool,
    extra: Sequence[str] = (),
) -> tuple[str, ...]:
    """DNS names the node certificate must cover: service FQDN, nodes (passthrough), extra.

    Node FQDNs are required only when SSL passes through the load balancer, because then the
    nodes reach each other and the clients reach the nodes by those names.
    """
    ordered = [service_fqdn, *(node_fqdns if passthrough else ()), *extra]
    names: list[str] = []
    for name in ordered:
        normal = _normal_name(name)
        if normal and normal not in names:
            names.append(normal)
    return tuple(names)


def name_covered(pattern: str, name: str) -> bool:
    """Whether a DNS SAN ``pattern`` covers host ``name`` (RFC 6125 section 6.4.3).

    A wildcard is honoured only as the whole left-most label of a name with at least two
    more labels ("*.example.com"); it stands for exactly one non-empty label, so it never
    matches across dots nor the bare parent. Partial wildcards ("a*.example.com") match
    nothing. Comparison ignores case and a trailing dot.
    """
    pattern, name = _normal_name(pattern), _normal_name(name)
    if not pattern or not name or "*" in name:
        return False
    if "*" not in pattern:
        return pattern == name
    wildcard, _, parent = pattern.partition(".")
    if wildcard != "*" or "*" in parent or parent.count(".") < 1:
        return False
    label, _, rest = name.partition(".")
    return bool(label) and rest == parent


def _dns_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(sans.get_values_for_type(x509.DNSName))


def _ip_sans(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    return tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))


def check_server_names(
    cert: x509.Certificate, service_fqdn: str, required: Sequence[str], source: str
) -> None:
    """CN must be the service FQDN and every required name must be covered by a DNS SAN."""
    common_names = [
        str(attribute.value)
        for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]
    expected = _normal_name(service_fqdn)
    if not any(_normal_name(cn) == expected for cn in common_names):
        actual = ", ".join(common_names)
        if actual:
            message = (
                f"{source} has Common Name {actual}, but the service FQDN {service_fqdn} "
                "is expected as its Common Name."
            )
        else:
            message = (
                f"{source} has no Common Name, but the service FQDN {service_fqdn} is "
                "expected as its Common Name."
            )
        raise CommonNameMismatchError(message, expected=service_fqdn, actual=actual)
    patterns = _dns_sans(cert)
    missing = tuple(name for name in required if not any(name_covered(p, name) for p in patterns))
    if missing:
        raise MissingSubjectAltNamesError(
            f"{source} is missing Subject Alternative Names for: {', '.join(missing)} "
            f"(expected DNS names covering: {', '.join(required)}).",
            missing=missing,
        )


# --------------------------------------------------------------------------- chains


_NOT_SERVER_AUTH = "its extendedKeyUsage does not include serverAuth"


def _server_auth_permitted(
    policy: Policy, cert: x509.Certificate, usage: x509.ExtendedKeyUsage | None
) -> None:
    """Keep the web-PKI rule that a served certificate with an EKU must allow serverAuth."""
    if usage is None:
        return
    if ExtendedKeyUsageOID.SERVER_AUTH not in usage and (
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in usage
    ):
        raise ValueError(_NOT_SERVER_AUTH)


# cryptography's web-PKI profile for the served (leaf) certificate, with relaxations that
# match what load balancers (OpenSSL-based) accept and that cost no security, because the
# issuer's signature, the validity period and the names are all still verified:
# - authorityKeyIdentifier may be absent: appliance-generated and older private-CA
#   certificates often omit it, and it only helps to pick an issuer;
# - subjectAltName and extendedKeyUsage may be marked critical: criticality only tells a
#   verifier that does not understand an extension to reject it, and this one understands
#   both (common private CAs and test CAs such as trustme mark them critical). The host
#   name is still matched against the SANs, and an EKU must still allow serverAuth.
# The CA profile of issuers stays web-PKI default (basicConstraints, keyUsage keyCertSign).
_LEAF_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
    .require_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_auth_permitted)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()
_REPR_IN_REASON = re.compile(
    r"\s*\(encountered processing <Certificate\(subject=<Name\((?P<subject>.*?)\)>, \.\.\.\)>\)"
)


def verify_served_chain(
    chain: Sequence[x509.Certificate],
    trusted_roots: Sequence[x509.Certificate],
    hostname: str,
    source: str,
    now: datetime.datetime | None = None,
) -> None:
    """Verify chain[0] (the served certificate) for ``hostname`` via chain[1:] to a trusted root."""
    if not chain:
        raise ChainVerificationError(
            f"{source} presented no certificate, so it cannot be verified for {hostname}."
        )
    if not trusted_roots:
        raise ChainVerificationError(
            f"{source} cannot be verified for {hostname}: no trusted root CA was given."
        )
    when = _utc(now)
    roots = _describe_roots(trusted_roots)
    try:
        verifier = (
            PolicyBuilder()
            .store(Store(list(trusted_roots)))
            .time(when)
            .extension_policies(ca_policy=_CA_POLICY, ee_policy=_LEAF_POLICY)
            .build_server_verifier(_verification_subject(hostname))
        )
    except ValueError:
        raise ChainVerificationError(
            f"{source} cannot be verified: {hostname!r} is not a valid DNS name or IP address."
        ) from None
    try:
        verifier.verify(chain[0], list(chain[1:]))
    except VerificationError as error:
        reason = _clean_reason(str(error))
        why = _diagnose(chain, trusted_roots, hostname, reason, when)
        raise ChainVerificationError(
            f"{source} does not verify for {hostname} against {roots}: {why} (verifier: {reason})."
        ) from None


def _verification_subject(hostname: str) -> x509.DNSName | x509.IPAddress:
    host = hostname.strip().rstrip(".")
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _describe_roots(roots: Sequence[x509.Certificate]) -> str:
    described = "; ".join(f"{_describe(r)}, SHA-256 {sha256_fingerprint(r)}" for r in roots)
    if len(roots) == 1:
        return f"the trusted root CA ({described})"
    return f"{len(roots)} trusted root CAs ({described})"


def _clean_reason(text: str) -> str:
    text = text.removeprefix("validation failed: ")
    text = re.sub(r"Python extension validator failed: \w+: ", "", text)
    return _REPR_IN_REASON.sub(lambda m: f" (at certificate {m.group('subject')})", text)


def _diagnose(
    chain: Sequence[x509.Certificate],
    trusted_roots: Sequence[x509.Certificate],
    hostname: str,
    reason: str,
    when: datetime.datetime,
) -> str:
    """Say in the operator's words why verification failed; fall back to the verifier's text."""
    leaf = chain[0]
    if "too weak" in reason:
        return f"a certificate in the chain has a key that is too weak; {_KEY_REQUIREMENT}"
    if "not valid at validation time" in reason:
        for cert in (*chain, *trusted_roots):
            phrase = _validity_phrase(cert, when)
            if phrase is not None:
                return f"certificate {_describe(cert)} {phrase.removeprefix('it ')}"
    if "subjectaltname" in reason.lower():
        names = _dns_sans(leaf) + _ip_sans(leaf)
        if not names:
            return "the served certificate has no Subject Alternative Names"
        return f"the served certificate's names ({', '.join(names)}) do not cover {hostname}"
    if _NOT_SERVER_AUTH in reason:
        return "the served certificate is not meant for TLS servers (it lacks serverAuth)"
    if "candidates exhausted" in reason:
        top = chain[-1]
        issuer = top.issuer.rfc4514_string() or "an empty name"
        why = (
            "the chain does not lead to a trusted root CA (the last certificate's issuer "
            f"is {issuer})"
        )
        if any(root.subject == top.issuer and not _issued_by(top, root) for root in trusted_roots):
            why += (
                "; a trusted root CA has that name but a different key, so the certificate "
                "was issued by another CA of the same name (was the root CA regenerated?)"
            )
        return why
    return "the chain was rejected"


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
