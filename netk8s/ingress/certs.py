"""TLS material for the ingress controller: checking a Secret's certificate/key pair and making the
self-signed default certificate (ingress-nginx's "Kubernetes Ingress Controller Fake Certificate").

Uses the `cryptography` library; no file I/O here.
"""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

FAKE_CERT_CN = "Kubernetes Ingress Controller Fake Certificate"


def pair_problem(cert_pem: bytes, key_pem: bytes) -> str | None:
    """Why a PEM certificate (chain) and private key cannot serve TLS, or None when they can."""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
    except ValueError as exc:
        return f"tls.crt is not a PEM certificate ({exc})"
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        return f"tls.key is not an unencrypted PEM private key ({exc})"
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    leaf = certs[0].public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    if public != leaf:
        return "tls.key does not match the certificate in tls.crt"
    return None


def self_signed(common_name: str, dns_names: list[str], days: int = 365,
                issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
                ca: bool = False) -> tuple[bytes, bytes]:
    """A certificate and key (PEM) for `dns_names`, signed by itself or by `issuer` (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (x509.CertificateBuilder()
               .subject_name(subject)
               .issuer_name(issuer[0].subject if issuer else subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if dns_names:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]),
                                        critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def fake_certificate() -> tuple[bytes, bytes]:
    """The default server's certificate, as ingress-nginx makes one at start-up."""
    return self_signed(FAKE_CERT_CN, ["ingress.local"])
