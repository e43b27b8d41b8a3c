"""A lab's PKI, made with the `cryptography` package: a CA, the API server's serving certificate and the
client credentials of every role (admin, controller, node agents, read-only viewer).

Like kubeadm's certs phase (kubeadm init phase certs): the CA signs a serving certificate whose SANs
cover the loopback address kubectl uses, the control-plane address on the underlay and the in-cluster
`kubernetes.default...` names, and client certificates whose CN is the user and O the group
(kube-apiserver's x509 authenticator, see netk8s/apiserver/auth.py). Keys are ECDSA P-256 (fast to make,
accepted by kubectl and Python's ssl). Every key file is written 0600; certificates are 0644.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netk8s import config
from netk8s.apiserver.auth import ADMIN_GROUP, NODES_GROUP, VIEWERS_GROUP

VALID_DAYS = 365
CA_VALID_DAYS = 3650
# The in-cluster names of the API server (kubeadm's apiserver certificate SANs).
KUBERNETES_NAMES = ("kubernetes", "kubernetes.default", "kubernetes.default.svc",
                    f"kubernetes.default.svc.{config.CLUSTER_DOMAIN}")
ADMIN_USER = "kubernetes-admin"
CONTROLLER_USER = "system:kube-controller-manager"
VIEWER_USER = "netk8s:viewer"


def node_user(node: str) -> str:
    """The user a node agent authenticates as (the kubelet's `system:node:NAME`)."""
    return f"system:node:{node}"


@dataclass(frozen=True)
class Credential:
    """A certificate and its key on disk."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` created with `mode` (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str, orgs: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


class LabPki:
    """The PKI of one lab under `directory` (the lab's state dir `pki/`). ensure_ca() first."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    @property
    def ca(self) -> Credential:
        return Credential(self.dir / "ca.crt", self.dir / "ca.key")

    def credential(self, stem: str) -> Credential:
        return Credential(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")

    def ensure_ca(self, lab: str) -> Credential:
        """The lab's CA (made once; kept when it exists)."""
        ca = self.ca
        if ca.cert.exists() and ca.key.exists():
            return ca
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        key = _new_key()
        name = _name(f"netk8s-{lab}-ca")
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False,
                                             encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256()))
        _write(ca.key, _key_pem(key), 0o600)
        _write(ca.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return ca

    def _load_ca(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def _issue(self, stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
               sans: list[x509.GeneralName] | None = None) -> Credential:
        ca_cert, ca_key = self._load_ca()
        key = _new_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False,
                                                content_commitment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                  critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        cred = self.credential(stem)
        _write(cred.key, _key_pem(key), 0o600)
        _write(cred.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
        return cred

    def issue_server(self, ips: list[str], names: tuple[str, ...] = KUBERNETES_NAMES) -> Credential:
        """The API server's serving certificate for these IP addresses and DNS names."""
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        sans += [x509.DNSName(n) for n in ("localhost", *names)]
        return self._issue("apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def issue_client(self, stem: str, user: str, groups: tuple[str, ...]) -> Credential:
        """A client certificate: CN = user, O = each group."""
        return self._issue(stem, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)


def lab_credentials(pki: LabPki, lab: str, server_ips: list[str], nodes: list[str]) -> dict[str, Credential]:
    """Make a lab's whole PKI: the CA, the serving certificate, and one client credential per role.
    Keys of the result: "apiserver", "admin", "controller", "viewer", and "node-NAME" per node."""
    pki.ensure_ca(lab)
    creds = {
        "apiserver": pki.issue_server(server_ips),
        "admin": pki.issue_client("admin", ADMIN_USER, (ADMIN_GROUP,)),
        # kube-controller-manager has its own broad ClusterRole; here the admin group stands for it, with
        # its own identity so the audit trail and a revocation tell them apart
        "controller": pki.issue_client("controller", CONTROLLER_USER, (ADMIN_GROUP,)),
        "viewer": pki.issue_client("viewer", VIEWER_USER, (VIEWERS_GROUP,)),
    }
    for node in nodes:
        creds[f"node-{node}"] = pki.issue_client(f"node-{node}", node_user(node), (NODES_GROUP,))
    return creds


def certificate_subject(path: Path) -> tuple[str, tuple[str, ...]]:
    """(CN, O groups) of a PEM certificate file."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return (str(cn[0]) if cn else ""), orgs


def certificate_sans(path: Path) -> tuple[list[str], list[str]]:
    """(IP addresses, DNS names) in a certificate's subjectAltName."""
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ([str(ip) for ip in ext.get_values_for_type(x509.IPAddress)],
            [str(n) for n in ext.get_values_for_type(x509.DNSName)])
