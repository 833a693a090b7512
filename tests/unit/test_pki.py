"""Unit tests for components.pki: parsing, fingerprints, CA rules, name coverage and chains."""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import pickle
from collections.abc import Sequence

import pytest
import trustme
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from components import pki

UTC = datetime.UTC
NOW = datetime.datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
SHA256 = hashes.SHA256()

SOURCE = "the root CA served by node ws1-a.corp.example"
SERVED = "the certificate served by node ws1-a.corp.example"
SERVICE = "ws1.corp.example"
NODES = ("ws1-a.corp.example", "ws1-b.corp.example", "ws1-c.corp.example")


# --------------------------------------------------------------------------- certificate factory

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | dsa.DSAPrivateKey


@functools.cache
def rsa_key(bits: int = 2048, slot: int = 0) -> rsa.RSAPrivateKey:
    """RSA keys are slow to make, so each (size, slot) is made once per test session."""
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def ec_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(curve or ec.SECP256R1())


def name(cn: str | None) -> x509.Name:
    if cn is None:
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "No CN Inc")])
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ku(*, cert_sign: bool = False, server: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=server,
        content_commitment=False,
        key_encipherment=server,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def make_root(
    cn: str = "vIDM Appliance Root CA",
    *,
    key: PrivateKey | None = None,
    ca: bool | None = True,
    key_usage: x509.KeyUsage | None = None,
    with_key_usage: bool = True,
    not_before: datetime.datetime = NOW - 30 * DAY,
    not_after: datetime.datetime = NOW + 3650 * DAY,
    digest: hashes.SHA256 | hashes.SHA384 = SHA256,
) -> tuple[x509.Certificate, PrivateKey]:
    """A self-signed root shaped like the appliance's: basicConstraints, keyUsage, SKI only."""
    key = key or ec_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
    if with_key_usage:
        builder = builder.add_extension(key_usage or ku(cert_sign=True), True)
    return builder.sign(key, digest), key


def make_leaf(
    issuer: x509.Certificate,
    issuer_key: PrivateKey,
    *,
    cn: str | None = SERVICE,
    sans: Sequence[str] = (SERVICE, *NODES),
    with_aki: bool = True,
    ca: bool = False,
    not_before: datetime.datetime = NOW - DAY,
    not_after: datetime.datetime = NOW + 365 * DAY,
    key: PrivateKey | None = None,
    usages: Sequence[x509.ObjectIdentifier] = (ExtendedKeyUsageOID.SERVER_AUTH,),
    critical_names: bool = False,
) -> x509.Certificate:
    """A server certificate shaped like the appliance's auto-generated one."""
    key = key or ec_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(cn))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(ku(cert_sign=ca, server=not ca), True)
        .add_extension(x509.ExtendedKeyUsage(list(usages)), critical_names)
    )
    if sans:
        general: list[x509.GeneralName] = []
        for san in sans:
            try:
                general.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                general.append(x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical_names)
    if with_aki:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            False,
        )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


def with_weak_signature(digest: hashes.HashAlgorithm) -> x509.Certificate:
    """A correctly signed RSA root whose signature uses SHA-1 or MD5.

    CertificateBuilder refuses these digests, so the SHA-256 algorithm identifier is swapped
    in the DER (same length) and the TBS part is signed again with the weak digest.
    """
    key = rsa_key()
    cert, _ = make_root(key=key)
    der = cert.public_bytes(serialization.Encoding.DER)
    sha256_rsa = bytes.fromhex("06092A864886F70D01010B")
    last = {"sha1": 5, "md5": 4}[digest.name]
    assert der.count(sha256_rsa) == 2
    patched = der.replace(sha256_rsa, sha256_rsa[:-1] + bytes([last]))
    tbs = x509.load_der_x509_certificate(patched).tbs_certificate_bytes
    signature = key.sign(tbs, padding.PKCS1v15(), digest)
    return x509.load_der_x509_certificate(patched[: -len(signature)] + signature)


@pytest.fixture(scope="module")
def root() -> tuple[x509.Certificate, PrivateKey]:
    return make_root()


@pytest.fixture(scope="module")
def leaf(root: tuple[x509.Certificate, PrivateKey]) -> x509.Certificate:
    return make_leaf(*root)


def pem(*certs: x509.Certificate) -> str:
    return "".join(pki.to_pem(c) for c in certs)


# --------------------------------------------------------------------------- parsing


def test_load_certificate_round_trips_pem_text_and_bytes(root):
    cert, _ = root
    assert pki.load_certificate(pem(cert), SOURCE) == cert
    assert pki.load_certificate(pem(cert).encode("ascii"), SOURCE) == cert


def test_load_bundle_keeps_order_and_tolerates_copy_paste_layout(root, leaf):
    cert, _ = root
    body = pem(leaf, cert)
    messy = (
        "\ufeffsubject=CN = ws1.corp.example\r\n"
        + "\r\n".join("    " + line for line in body.splitlines())
        + "\r\ntrailing notes\r\n"
    )
    assert pki.load_bundle(messy, SOURCE) == [leaf, cert]
    escaped = pem(cert).replace("\n", "\\n")
    assert pki.load_bundle(escaped, SOURCE) == [cert]


@pytest.mark.parametrize("data", ["", "  \n\t", b"", b"\n\n"])
def test_empty_input(data):
    with pytest.raises(pki.EmptyInputError) as caught:
        pki.load_bundle(data, SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} is empty; a PEM certificate (-----BEGIN CERTIFICATE----- ... "
        "-----END CERTIFICATE-----) is expected."
    )


@pytest.mark.parametrize(
    "page",
    [
        "<!DOCTYPE html>\n<html><head><title>Workspace ONE Access</title></head>"
        "<body><form action='/SAAS/auth/login'></form></body></html>",
        b"<html>\n<body>Bad Gateway \xe9</body></html>",
    ],
)
def test_html_page_instead_of_pem(page):
    with pytest.raises(pki.HtmlInsteadOfPemError) as caught:
        pki.load_certificate(page, SOURCE)
    assert str(caught.value) == (
        "the root CA served by node ws1-a.corp.example is an HTML page, not a PEM certificate "
        "(a login or error page was served instead of the CA)."
    )


def test_plain_text_is_not_pem():
    with pytest.raises(pki.NotPemError) as caught:
        pki.load_certificate("ok", SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} is not a PEM certificate: no -----BEGIN CERTIFICATE----- line was found."
    )


def test_base64_without_armour_is_not_pem(root):
    cert, _ = root
    bare = "".join(pem(cert).splitlines()[1:-1])
    with pytest.raises(pki.NotPemError) as caught:
        pki.load_certificate(bare, SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} is base64 certificate data without its -----BEGIN CERTIFICATE----- and "
        "-----END CERTIFICATE----- lines; paste the whole PEM block including them."
    )


def test_other_pem_kind_is_rejected():
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(name(SERVICE))
        .sign(ec_key(), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(pki.NotPemError) as caught:
        pki.load_bundle(csr, SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} contains a PEM block of another kind (CERTIFICATE REQUEST); only "
        "-----BEGIN CERTIFICATE----- blocks are expected."
    )


def test_binary_garbage_is_not_pem():
    with pytest.raises(pki.NotPemError) as caught:
        pki.load_certificate(bytes(range(256)), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} is binary data that is neither a PEM nor a DER certificate; a PEM "
        "certificate (-----BEGIN CERTIFICATE-----) is expected."
    )


def test_missing_end_line_is_corrupt(root):
    cert, _ = root
    cut = pem(cert).replace("-----END CERTIFICATE-----", "")
    with pytest.raises(pki.CorruptPemError) as caught:
        pki.load_certificate(cut, SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} has a -----BEGIN CERTIFICATE----- line (block 1) without its "
        "-----END CERTIFICATE----- line; the text was cut off or altered when it was copied."
    )


def test_end_line_with_four_dashes_is_corrupt(root, leaf):
    # The vendor's own instructions print the END line with four dashes.
    cert, _ = root
    text = pem(leaf).replace("-----END CERTIFICATE-----", "-----END CERTIFICATE----") + pem(cert)
    with pytest.raises(pki.CorruptPemError, match=r"line \(block 1\) without its -----END"):
        pki.load_bundle(text, SOURCE)


def test_stray_end_line_is_corrupt(root):
    cert, _ = root
    with pytest.raises(pki.CorruptPemError) as caught:
        pki.load_bundle(pem(cert) + "-----END CERTIFICATE-----\n", SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} has an unexpected -----END CERTIFICATE----- line without a matching BEGIN "
        "line; the PEM text is damaged."
    )


def test_invalid_base64_is_corrupt(root):
    cert, _ = root
    lines = pem(cert).splitlines()
    lines[2] = lines[2][:10] + "!" + lines[2][11:]
    with pytest.raises(pki.CorruptPemError) as caught:
        pki.load_certificate("\n".join(lines), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} has damaged base64 in its certificate (invalid characters or a truncated "
        "line); copy the PEM block again, from BEGIN to END."
    )


def test_truncated_base64_is_corrupt(root, leaf):
    cert, _ = root
    lines = pem(cert).splitlines()
    del lines[2]  # a whole 64-character line lost: still valid base64, broken DER
    with pytest.raises(pki.CorruptPemError) as caught:
        pki.load_bundle(pem(leaf) + "\n".join(lines), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} has a PEM block whose content is not a valid X.509 certificate "
        "(certificate 2 of 2 is truncated or corrupted); copy the PEM block again, from BEGIN "
        "to END."
    )


def test_malformed_extension_is_reported_while_parsing(root):
    cert, key = root
    broken_san = x509.UnrecognizedExtension(
        x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x05\x00"
    )
    bad = (
        x509.CertificateBuilder()
        .subject_name(name(SERVICE))
        .issuer_name(cert.subject)
        .public_key(ec_key().public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + DAY)
        .add_extension(broken_san, False)
        .sign(key, SHA256)
    )
    with pytest.raises(pki.CorruptPemError) as caught:
        pki.load_certificate(pki.to_pem(bad), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} has malformed X.509 extensions in its certificate; a well-formed "
        "certificate is expected."
    )


def _private_keys() -> list[bytes]:
    key = ec_key()
    traditional = serialization.PrivateFormat.TraditionalOpenSSL
    pkcs8 = serialization.PrivateFormat.PKCS8
    return [
        key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()),
        key.private_bytes(serialization.Encoding.PEM, traditional, serialization.NoEncryption()),
        key.private_bytes(
            serialization.Encoding.PEM, pkcs8, serialization.BestAvailableEncryption(b"pw")
        ),
        rsa_key().private_bytes(
            serialization.Encoding.PEM, traditional, serialization.NoEncryption()
        ),
    ]


@pytest.mark.parametrize("key_pem", _private_keys(), ids=["pkcs8", "ec", "encrypted", "rsa"])
@pytest.mark.parametrize("with_certificate", [False, True])
def test_private_key_is_refused_without_echoing_it(key_pem, with_certificate, root):
    cert, _ = root
    data = (pem(cert) if with_certificate else "") + key_pem.decode()
    with pytest.raises(pki.PrivateKeyNotCertificateError) as caught:
        pki.load_bundle(data, SOURCE)
    message = str(caught.value)
    assert message == (
        f"{SOURCE} contains a private key; only the certificate is expected (paste the "
        "-----BEGIN CERTIFICATE----- block, never the private key, and treat this key as "
        "exposed if it was shared)."
    )
    for line in key_pem.decode().splitlines()[1:-1]:
        assert line[:16] not in message
        assert line[:16] not in repr(caught.value)


def test_der_bytes_are_refused_with_conversion_hint(root):
    cert, _ = root
    with pytest.raises(pki.DerNotPemError) as caught:
        pki.load_certificate(cert.public_bytes(serialization.Encoding.DER), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} is a DER (binary) certificate, but PEM text is expected; convert it with: "
        "openssl x509 -inform der -in cert.der -out cert.pem."
    )


def test_several_certificates_where_one_is_expected(root, leaf):
    cert, _ = root
    with pytest.raises(pki.MultipleCertificatesError) as caught:
        pki.load_certificate(pem(cert, leaf, cert), SOURCE)
    assert str(caught.value) == (
        f"{SOURCE} contains 3 certificates, but exactly one is expected (found: "
        "CN=vIDM Appliance Root CA; CN=ws1.corp.example; CN=vIDM Appliance Root CA)."
    )


def test_every_error_is_a_value_error():
    assert issubclass(pki.CertificateError, ValueError)
    for kind in (pki.EmptyInputError, pki.ChainVerificationError, pki.FingerprintFormatError):
        assert issubclass(kind, pki.CertificateError)


# --------------------------------------------------------------------------- encoding


def test_bundle_pem_deduplicates_by_fingerprint_keeping_order(root, leaf):
    cert, _ = root
    reparsed = pki.load_certificate(pem(cert), SOURCE)  # equal content, distinct object
    bundle = pki.bundle_pem([leaf, cert, leaf, reparsed])
    assert bundle == pem(leaf) + pem(cert)
    assert pki.load_bundle(bundle, SOURCE) == [leaf, cert]
    assert pki.bundle_pem([]) == ""


def test_to_pem_is_standard_pem(root):
    cert, _ = root
    text = pki.to_pem(cert)
    assert text.startswith("-----BEGIN CERTIFICATE-----\n")
    assert text.endswith("-----END CERTIFICATE-----\n")
    assert x509.load_pem_x509_certificate(text.encode()) == cert


def test_sha256_fingerprint_matches_openssl_style(root):
    cert, _ = root
    raw = cert.fingerprint(hashes.SHA256()).hex()
    fingerprint = pki.sha256_fingerprint(cert)
    assert fingerprint == ":".join(raw[i : i + 2] for i in range(0, 64, 2)).upper()
    assert len(fingerprint) == 95


@pytest.mark.parametrize(
    "written",
    [
        "{colon}",
        "{colon_lower}",
        "{plain}",
        "{plain_lower}",
        "{spaced}",
        "  {colon}\n",
        "sha256:{plain_lower}",
        "SHA256:{colon}",
        "SHA-256: {colon}",
        "SHA256 Fingerprint={colon}",
        "sha256 Fingerprint={colon}",
    ],
)
def test_normalize_fingerprint_accepts_common_spellings(written, root):
    cert, _ = root
    canonical = pki.sha256_fingerprint(cert)
    plain = canonical.replace(":", "")
    text = written.format(
        colon=canonical,
        colon_lower=canonical.lower(),
        plain=plain,
        plain_lower=plain.lower(),
        spaced=canonical.replace(":", " "),
    )
    assert pki.normalize_fingerprint(text, "config key x:pin") == canonical


FINGERPRINT_RULE = (
    "a SHA-256 fingerprint is 32 bytes written as 64 hex digits, optionally separated by "
    "colons or spaces, e.g. AB:12:...:EF"
)


def test_normalize_fingerprint_rejects_sha1_thumbprint():
    with pytest.raises(pki.FingerprintFormatError) as caught:
        pki.normalize_fingerprint("AB" * 20, "config key ws1-access-lb-trust:pin")
    assert str(caught.value) == (
        "config key ws1-access-lb-trust:pin has 40 hex digits (this looks like a SHA-1 "
        f"thumbprint; use the SHA-256 fingerprint); {FINGERPRINT_RULE}."
    )


def test_normalize_fingerprint_rejects_wrong_length_and_empty():
    with pytest.raises(pki.FingerprintFormatError) as caught:
        pki.normalize_fingerprint("AB:CD", "config key k")
    assert str(caught.value) == f"config key k has 4 hex digits; {FINGERPRINT_RULE}."
    with pytest.raises(pki.FingerprintFormatError) as caught:
        pki.normalize_fingerprint("  sha256:  ", "config key k")
    assert str(caught.value) == f"config key k is empty; {FINGERPRINT_RULE}."


def test_normalize_fingerprint_rejects_non_hex():
    with pytest.raises(pki.FingerprintFormatError) as caught:
        pki.normalize_fingerprint("ZZ" * 32, "config key k")
    assert str(caught.value) == (
        f"config key k is {'ZZ' * 32!r}, which contains characters that are not hex digits; "
        f"{FINGERPRINT_RULE}."
    )


def test_normalize_fingerprint_never_echoes_a_pasted_pem_block(root):
    cert, _ = root
    with pytest.raises(pki.FingerprintFormatError) as caught:
        pki.normalize_fingerprint(pem(cert), "config key k")
    assert str(caught.value) == (
        f"config key k is text that contains characters that are not hex digits; "
        f"{FINGERPRINT_RULE}."
    )


# --------------------------------------------------------------------------- facts


def test_summarize_gives_plain_values(root):
    cert, key = root
    leaf = make_leaf(cert, key, sans=(SERVICE, "10.0.0.5"), key=rsa_key())
    summary = pki.summarize(leaf)
    assert summary.subject == "CN=ws1.corp.example"
    assert summary.issuer == "CN=vIDM Appliance Root CA"
    assert int(summary.serial, 16) == leaf.serial_number
    assert summary.serial == summary.serial.upper() and len(summary.serial) % 2 == 0
    assert summary.not_before == NOW - DAY
    assert summary.not_after == NOW + 365 * DAY
    assert (summary.key_type, summary.key_size) == ("RSA", 2048)
    assert summary.sans == (SERVICE, "10.0.0.5")
    assert summary.sha256 == pki.sha256_fingerprint(leaf)
    assert pki.summarize(cert).key_type == "EC" and pki.summarize(cert).key_size == 256
    with pytest.raises(AttributeError):
        summary.subject = "x"  # type: ignore[misc]


def test_days_until_expiry_rounds_down_and_goes_negative(root):
    cert, key = root
    leaf = make_leaf(cert, key, not_after=NOW + 10 * DAY)
    assert pki.days_until_expiry(leaf, NOW) == 10
    assert pki.days_until_expiry(leaf, NOW + datetime.timedelta(hours=1)) == 9
    assert pki.days_until_expiry(leaf, NOW + 10 * DAY) == 0
    assert pki.days_until_expiry(leaf, NOW + 10 * DAY + datetime.timedelta(seconds=1)) == -1
    assert pki.days_until_expiry(leaf, NOW + 13 * DAY) == -3
    naive = (NOW + 13 * DAY).replace(tzinfo=None)
    assert pki.days_until_expiry(leaf, naive) == -3


# --------------------------------------------------------------------------- CA judgement


@pytest.mark.parametrize(
    "key_factory",
    [lambda: rsa_key(2048), lambda: ec_key(ec.SECP256R1()), lambda: ec_key(ec.SECP384R1())],
    ids=["rsa2048", "p256", "p384"],
)
def test_good_ca_passes(key_factory):
    cert, _ = make_root(key=key_factory())
    pki.check_ca(cert, SOURCE, NOW)
    assert pki.check_ca_all(cert, SOURCE, NOW) == []


def test_trustme_ca_passes_with_the_real_clock():
    ca = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    pki.check_ca(ca, SOURCE)


def test_missing_basic_constraints_is_not_a_ca():
    cert, _ = make_root(ca=None)
    with pytest.raises(pki.NotACaError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) is not a CA certificate: it has no "
        "basicConstraints extension, and CA=true is expected (was a server certificate given "
        "instead of the root CA?)."
    )


def test_ca_false_is_not_a_ca():
    cert, _ = make_root(SERVICE, ca=False)
    with pytest.raises(pki.NotACaError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=ws1.corp.example) is not a CA certificate: basicConstraints says "
        "CA=false, and CA=true is expected (was a server certificate given instead of the "
        "root CA?)."
    )


def test_ca_without_key_cert_sign():
    cert, _ = make_root(key_usage=ku(server=True))
    with pytest.raises(pki.MissingKeyCertSignError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) has keyUsage without keyCertSign; a CA must "
        "have keyCertSign to be accepted as an issuer of server certificates."
    )


def test_ca_without_key_usage():
    cert, _ = make_root(with_key_usage=False)
    with pytest.raises(pki.MissingKeyCertSignError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) has no keyUsage extension; a CA must have "
        "keyUsage keyCertSign to be accepted as an issuer of server certificates."
    )


def test_not_yet_valid_ca():
    start = datetime.datetime(2025, 6, 4, 0, 0, tzinfo=UTC)
    cert, _ = make_root(not_before=start)
    with pytest.raises(pki.NotYetValidError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) is not valid yet: it becomes valid on "
        "2025-06-04T00:00:00Z (in 2 days); check the clocks of the appliance and of this "
        "machine."
    )


def test_expired_ca():
    end = datetime.datetime(2025, 5, 2, 0, 0, tzinfo=UTC)
    cert, _ = make_root(not_before=end - 3650 * DAY, not_after=end)
    with pytest.raises(pki.ExpiredError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) expired on 2025-05-02T00:00:00Z (30 days ago); "
        "a currently valid certificate is expected."
    )
    with pytest.raises(pki.ExpiredError, match=r"\(1 day ago\)"):
        pki.check_ca(cert, SOURCE, end + DAY)
    with pytest.raises(pki.ExpiredError, match=r"\(less than a day ago\)"):
        pki.check_ca(cert, SOURCE, end + datetime.timedelta(minutes=5))


def test_rsa_1024_is_weak():
    cert, _ = make_root(key=rsa_key(1024))
    with pytest.raises(pki.WeakKeyError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) uses an RSA 1024-bit key; at least RSA 2048 "
        "or EC P-256 is required."
    )


def test_small_ec_curve_is_weak():
    try:
        key = ec_key(ec.SECP224R1())
    except UnsupportedAlgorithm:
        pytest.skip("this OpenSSL build has no P-224")
    cert, _ = make_root(key=key)
    with pytest.raises(pki.WeakKeyError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) uses an EC P-224 key; at least RSA 2048 or "
        "EC P-256 is required."
    )


def test_dsa_is_refused_whatever_its_size():
    cert, _ = make_root(key=dsa.generate_private_key(2048))
    with pytest.raises(pki.WeakKeyError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) uses a DSA 2048-bit key; at least RSA 2048 or "
        "EC P-256 is required."
    )


@pytest.mark.parametrize(("digest", "label"), [(hashes.SHA1(), "SHA-1"), (hashes.MD5(), "MD5")])
def test_weak_signature(digest, label):
    cert = with_weak_signature(digest)
    with pytest.raises(pki.WeakSignatureError) as caught:
        pki.check_ca(cert, SOURCE, NOW)
    assert str(caught.value) == (
        f"{SOURCE} (CN=vIDM Appliance Root CA) is signed with {label}, which is broken; a "
        "SHA-256 or stronger signature is expected."
    )


def test_check_ca_raises_the_first_rule_and_check_ca_all_lists_every_rule():
    end = NOW - 5 * DAY
    cert, _ = make_root(
        key=rsa_key(1024),
        ca=False,
        key_usage=ku(server=True),
        not_after=end,
        not_before=end - 10 * DAY,
    )
    problems = pki.check_ca_all(cert, SOURCE, NOW)
    assert [type(p) for p in problems] == [
        pki.NotACaError,
        pki.MissingKeyCertSignError,
        pki.ExpiredError,
        pki.WeakKeyError,
    ]
    with pytest.raises(pki.NotACaError):
        pki.check_ca(cert, SOURCE, NOW)
    sha1 = with_weak_signature(hashes.SHA1())
    assert [type(p) for p in pki.check_ca_all(sha1, SOURCE, NOW + 5000 * DAY)] == [
        pki.ExpiredError,
        pki.WeakSignatureError,
    ]


# --------------------------------------------------------------------------- names


def test_required_names_passthrough_includes_every_node():
    names = pki.required_names(
        "WS1.corp.example.",
        ["ws1-a.corp.example", "WS1-B.corp.example"],
        passthrough=True,
        extra=["ws1-dr.corp.example", "ws1.corp.example"],
    )
    assert names == (
        "ws1.corp.example",
        "ws1-a.corp.example",
        "ws1-b.corp.example",
        "ws1-dr.corp.example",
    )


def test_required_names_when_the_load_balancer_terminates_ssl():
    assert pki.required_names(SERVICE, NODES, passthrough=False) == (SERVICE,)
    assert pki.required_names(SERVICE, NODES, passthrough=False, extra=["b.x.example"]) == (
        SERVICE,
        "b.x.example",
    )


@pytest.mark.parametrize(
    ("pattern", "host", "covered"),
    [
        ("*.example.com", "a.example.com", True),
        ("*.Example.COM", "A.example.com.", True),
        ("ws1.corp.example", "WS1.CORP.EXAMPLE", True),
        ("ws1.corp.example.", "ws1.corp.example", True),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", "example.com", False),
        ("*.example.com", ".example.com", False),
        ("a*.example.com", "ab.example.com", False),
        ("a*.example.com", "a*.example.com", False),
        ("*a.example.com", "ba.example.com", False),
        ("a.*.example.com", "a.b.example.com", False),
        ("*.*.example.com", "a.b.example.com", False),
        ("*.com", "example.com", False),
        ("*", "example", False),
        ("ws1.corp.example", "ws1-a.corp.example", False),
        ("", "", False),
    ],
)
def test_name_covered_follows_rfc_6125(pattern, host, covered):
    assert pki.name_covered(pattern, host) is covered


def test_server_names_pass_with_exact_and_wildcard_sans(root):
    cert, key = root
    required = pki.required_names(SERVICE, NODES, passthrough=True)
    pki.check_server_names(make_leaf(cert, key), SERVICE, required, SERVED)
    wildcard = make_leaf(cert, key, cn="WS1.corp.example", sans=(SERVICE, "*.corp.example"))
    pki.check_server_names(wildcard, "ws1.corp.example.", required, SERVED)


def test_common_name_mismatch(root):
    cert, key = root
    node_cn = make_leaf(cert, key, cn="ws1-a.corp.example")
    with pytest.raises(pki.CommonNameMismatchError) as caught:
        pki.check_server_names(node_cn, SERVICE, [SERVICE], SERVED)
    assert str(caught.value) == (
        f"{SERVED} has Common Name ws1-a.corp.example, but the service FQDN ws1.corp.example "
        "is expected as its Common Name."
    )
    assert (caught.value.expected, caught.value.actual) == (SERVICE, "ws1-a.corp.example")


def test_missing_common_name(root):
    cert, key = root
    with pytest.raises(pki.CommonNameMismatchError) as caught:
        pki.check_server_names(make_leaf(cert, key, cn=None), SERVICE, [SERVICE], SERVED)
    assert str(caught.value) == (
        f"{SERVED} has no Common Name, but the service FQDN ws1.corp.example is expected as "
        "its Common Name."
    )
    assert caught.value.actual == ""


def test_missing_subject_alt_names_lists_exactly_the_missing_ones(root):
    cert, key = root
    partial = make_leaf(cert, key, sans=(SERVICE, "ws1-a.corp.example"))
    required = pki.required_names(SERVICE, NODES, passthrough=True)
    with pytest.raises(pki.MissingSubjectAltNamesError) as caught:
        pki.check_server_names(partial, SERVICE, required, SERVED)
    assert str(caught.value) == (
        "the certificate served by node ws1-a.corp.example is missing Subject Alternative "
        "Names for: ws1-b.corp.example, ws1-c.corp.example (expected DNS names covering: "
        "ws1.corp.example, ws1-a.corp.example, ws1-b.corp.example, ws1-c.corp.example)."
    )
    assert caught.value.missing == ("ws1-b.corp.example", "ws1-c.corp.example")


def test_cn_alone_does_not_count_as_a_subject_alt_name(root):
    cert, key = root
    no_sans = make_leaf(cert, key, sans=())
    with pytest.raises(pki.MissingSubjectAltNamesError) as caught:
        pki.check_server_names(no_sans, SERVICE, [SERVICE], SERVED)
    assert caught.value.missing == (SERVICE,)


def test_errors_with_attributes_survive_pickling():
    cn = pki.CommonNameMismatchError("m.", expected="a", actual="b")
    copy = pickle.loads(pickle.dumps(cn))
    assert (str(copy), copy.expected, copy.actual) == ("m.", "a", "b")
    sans = pki.MissingSubjectAltNamesError("n.", missing=("x",))
    assert pickle.loads(pickle.dumps(sans)).missing == ("x",)


# --------------------------------------------------------------------------- chains


def test_appliance_shaped_chain_verifies_for_each_node(root, leaf):
    cert, _ = root
    for host in (SERVICE, *NODES):
        pki.verify_served_chain([leaf], [cert], host, SERVED, now=NOW)
    pki.verify_served_chain([leaf, cert], [cert], "WS1-A.corp.example.", SERVED, now=NOW)


def test_leaf_without_authority_key_identifier_is_accepted(root):
    cert, key = root
    pki.verify_served_chain([make_leaf(cert, key, with_aki=False)], [cert], SERVICE, SERVED, NOW)


def test_chain_through_an_intermediate(root):
    cert, key = root
    intermediate_key = ec_key()
    intermediate = make_leaf(cert, key, cn="Issuing CA", sans=(), ca=True, key=intermediate_key)
    served = make_leaf(intermediate, intermediate_key)
    pki.verify_served_chain([served, intermediate], [cert], SERVICE, SERVED, NOW)
    with pytest.raises(pki.ChainVerificationError, match="does not lead to a trusted root"):
        pki.verify_served_chain([served], [cert], SERVICE, SERVED, NOW)


def test_trustme_chain_verifies_with_the_real_clock():
    ca = trustme.CA()
    issued = ca.issue_cert(SERVICE, "10.1.2.3")
    chain = [x509.load_pem_x509_certificate(p.bytes()) for p in issued.cert_chain_pems]
    roots = [x509.load_pem_x509_certificate(ca.cert_pem.bytes())]
    pki.verify_served_chain(chain, roots, SERVICE, SERVED)
    pki.verify_served_chain(chain, roots, "10.1.2.3", SERVED)


def test_wrong_root_is_untrusted(root, leaf):
    other, _ = make_root("Some Other Root")
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([leaf], [other], "ws1-a.corp.example", SERVED, NOW)
    message = str(caught.value)
    assert message.startswith(
        f"{SERVED} does not verify for ws1-a.corp.example against the trusted root CA "
        f"(CN=Some Other Root, SHA-256 {pki.sha256_fingerprint(other)}): the chain does not "
        "lead to a trusted root CA (the last certificate's issuer is CN=vIDM Appliance Root "
        "CA) (verifier: "
    )
    assert "candidates exhausted" in message
    assert message.endswith(").")


def test_regenerated_root_with_the_same_name_is_explained(root, leaf):
    regenerated, _ = make_root()  # same subject, new key
    first, _ = make_root("Unrelated Root")
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([leaf], [first, regenerated], SERVICE, SERVED, NOW)
    message = str(caught.value)
    assert "against 2 trusted root CAs (CN=Unrelated Root, SHA-256 " in message
    assert (
        "; a trusted root CA has that name but a different key, so the certificate was issued "
        "by another CA of the same name (was the root CA regenerated?) (verifier: "
    ) in message


def test_hostname_mismatch(root):
    cert, key = root
    lb_terminated = make_leaf(cert, key, sans=(SERVICE,))
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([lb_terminated], [cert], "ws1-b.corp.example", SERVED, NOW)
    message = str(caught.value)
    assert message.startswith(
        f"{SERVED} does not verify for ws1-b.corp.example against the trusted root CA "
        f"(CN=vIDM Appliance Root CA, SHA-256 {pki.sha256_fingerprint(cert)}): the served "
        "certificate's names (ws1.corp.example) do not cover ws1-b.corp.example (verifier: "
    )
    assert "subjectAltName" in message
    assert "<Certificate" not in message  # the verifier's repr is rewritten for people


def test_expired_leaf_with_injected_time(root):
    cert, key = root
    end = datetime.datetime(2025, 7, 1, 0, 0, tzinfo=UTC)
    served = make_leaf(cert, key, not_after=end)
    pki.verify_served_chain([served], [cert], SERVICE, SERVED, now=end - DAY)
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([served], [cert], SERVICE, SERVED, now=end + 3 * DAY)
    message = str(caught.value)
    assert (
        ": certificate CN=ws1.corp.example expired on 2025-07-01T00:00:00Z (3 days ago) "
        "(verifier: cert is not valid at validation time (at certificate CN=ws1.corp.example))."
    ) in message


def test_not_yet_valid_leaf(root):
    cert, key = root
    served = make_leaf(cert, key, not_before=NOW + 2 * DAY)
    with pytest.raises(pki.ChainVerificationError, match=r"CN=ws1.corp.example becomes valid on"):
        pki.verify_served_chain([served], [cert], SERVICE, SERVED, NOW)


def test_nothing_to_verify(root, leaf):
    cert, _ = root
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([], [cert], SERVICE, SERVED, NOW)
    assert str(caught.value) == (
        f"{SERVED} presented no certificate, so it cannot be verified for ws1.corp.example."
    )
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([leaf], [], SERVICE, SERVED, NOW)
    assert str(caught.value) == (
        f"{SERVED} cannot be verified for ws1.corp.example: no trusted root CA was given."
    )


def test_invalid_hostname(root, leaf):
    cert, _ = root
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([leaf], [cert], "ws1 corp", SERVED, NOW)
    assert str(caught.value) == (
        f"{SERVED} cannot be verified: 'ws1 corp' is not a valid DNS name or IP address."
    )


def test_critical_names_and_usage_are_accepted(root):
    cert, key = root
    served = make_leaf(cert, key, critical_names=True)
    pki.verify_served_chain([served], [cert], "ws1-c.corp.example", SERVED, NOW)
    with pytest.raises(pki.ChainVerificationError, match="do not cover other.corp.example"):
        pki.verify_served_chain([served], [cert], "other.corp.example", SERVED, NOW)


@pytest.mark.parametrize("critical", [False, True])
def test_certificate_not_for_server_authentication_is_rejected(root, critical):
    cert, key = root
    client_only = make_leaf(
        cert, key, usages=(ExtendedKeyUsageOID.CLIENT_AUTH,), critical_names=critical
    )
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([client_only], [cert], SERVICE, SERVED, NOW)
    assert str(caught.value).endswith(
        ": the served certificate is not meant for TLS servers (it lacks serverAuth) (verifier: "
        "its extendedKeyUsage does not include serverAuth (at certificate CN=ws1.corp.example))."
    )
    any_usage = make_leaf(cert, key, usages=(ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,))
    pki.verify_served_chain([any_usage], [cert], SERVICE, SERVED, NOW)


def test_weak_intermediate_key_is_rejected_by_the_verifier(root):
    cert, key = root
    weak_key = rsa_key(1024)
    intermediate = make_leaf(cert, key, cn="Issuing CA", sans=(), ca=True, key=weak_key)
    served = make_leaf(intermediate, weak_key)
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([served, intermediate], [cert], SERVICE, SERVED, NOW)
    assert (
        ": a certificate in the chain has a key that is too weak; at least RSA 2048 or EC P-256 "
        "is required (verifier: "
    ) in str(caught.value)


def test_expired_trusted_root_is_named(root):
    cert, key = root
    expired, _ = make_root(key=key, not_before=NOW - 100 * DAY, not_after=NOW - DAY)
    with pytest.raises(pki.ChainVerificationError) as caught:
        pki.verify_served_chain([make_leaf(cert, key)], [expired], SERVICE, SERVED, NOW)
    assert (
        ": certificate CN=vIDM Appliance Root CA expired on 2025-05-31T12:00:00Z (1 day ago) "
        "(verifier: "
    ) in str(caught.value)


def test_base64_helper_sanity(root):
    # Guards the fixture used by the bare-base64 test: the armour-less text really is the DER.
    cert, _ = root
    bare = "".join(pem(cert).splitlines()[1:-1])
    assert base64.b64decode(bare) == cert.public_bytes(serialization.Encoding.DER)
