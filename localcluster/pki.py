"""Certificates and keys of the local cluster: one CA, the API server's serving certificate, a client
certificate per identity and the ServiceAccount token signing key."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class Identity:
    """Who a client certificate says it is: the user name and its groups, as Kubernetes reads them."""

    user: str
    groups: tuple[str, ...] = ()

    @property
    def file_stem(self) -> str:
        return self.user.replace(":", "-")


ADMIN = Identity("kubescribe-admin", ("system:masters",))
CONTROLLER_MANAGER = Identity("system:kube-controller-manager")
SCHEDULER = Identity("system:kube-scheduler")
KUEUE = Identity("kueue-controller-manager")
KUBELET_CLIENT = Identity("kube-apiserver-kubelet-client")
"""The API server, calling a node's kubelet API (for `kubectl logs`)."""


def node_identity(node: str) -> Identity:
    return Identity(f"system:node:{node}", ("system:nodes",))


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


class CertificateAuthority:
    """The cluster's CA, kept as PEM files in a directory; created on first use, reused after."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.cert_path = directory / "ca.crt"
        key_path = directory / "ca.key"
        if not self.cert_path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            key = _new_key()
            name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubescribe-local-ca")])
            cert = (
                _builder(name, name, key.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        key_cert_sign=True,
                        crl_sign=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .sign(key, hashes.SHA256())
            )
            _write_private(key_path, _key_pem(key))
            self.cert_path.write_bytes(_cert_pem(cert))
        self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        self._cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())

    def issue(
        self, stem: str, subject: x509.Name, *, server_ips: tuple[str, ...] = (), server_names: tuple[str, ...] = ()
    ) -> tuple[Path, Path]:
        """Writes `<stem>.crt` and `<stem>.key` (unless present) and returns their paths. With
        server addresses the certificate serves TLS, otherwise it authenticates a client."""
        cert_path, key_path = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        if cert_path.exists() and key_path.exists():
            return cert_path, key_path
        key = _new_key()
        assert isinstance(self._key, ec.EllipticCurvePrivateKey)
        builder = _builder(subject, self._cert.subject, key.public_key()).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        if server_ips or server_names:
            sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in server_ips]
            sans += [x509.DNSName(name) for name in server_names]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = ExtendedKeyUsageOID.SERVER_AUTH
        else:
            usage = ExtendedKeyUsageOID.CLIENT_AUTH
        cert = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(self._key, hashes.SHA256())
        _write_private(key_path, _key_pem(key))
        cert_path.write_bytes(_cert_pem(cert))
        return cert_path, key_path

    def issue_client(self, identity: Identity) -> tuple[Path, Path]:
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in identity.groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, identity.user))
        return self.issue(identity.file_stem, x509.Name(attributes))

    def issue_server(self, stem: str, ips: tuple[str, ...], names: tuple[str, ...]) -> tuple[Path, Path]:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, stem)])
        return self.issue(stem, subject, server_ips=ips, server_names=names)


def ensure_signing_key(directory: Path) -> tuple[Path, Path]:
    """The key pair that signs ServiceAccount tokens: (private key, public key)."""
    private, public = directory / "sa.key", directory / "sa.pub"
    if not private.exists():
        key = _new_key()
        _write_private(private, _key_pem(key))
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    return private, public


def _write_private(path: Path, data: bytes) -> None:
    path.touch(mode=0o600)
    path.write_bytes(data)
