"""Test and local PKI: a CA and leaf certificates for given DNS names and URIs (SPIFFE ids), as PEM
bytes, made with `cryptography`; `XdsPki` writes the files an edge and its Envoy need for mTLS
(docs/design.md §10)."""

from __future__ import annotations

import datetime
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from xdsbus_dev.envoy_bootstrap import EDGE_SERVER_NAME, ClientTls

__all__ = ["EDGE_SERVER_NAME", "ENVOY_IDENTITY", "ClientTls", "KeyPair", "TestCA", "XdsPki", "write_private"]

# Fixed validity window around a fixed date would expire; certificates are valid from yesterday for a
# year, which is all a test run needs.
_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True)
class KeyPair:
    cert_pem: bytes
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class TestCA:
    """A self-signed CA that issues server and client certificates."""

    __test__ = False

    def __init__(self, common_name: str = "xdsbus test CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_pem = self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(self, *dns_names: str, client: bool = False, uris: tuple[str, ...] = ()) -> KeyPair:
        """A leaf certificate for `dns_names` and `uris` (the first DNS name, else the first URI, is also its
        common name); `client`: for client authentication rather than for a server."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
        usage = (
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH if client else x509.oid.ExtendedKeyUsageOID.SERVER_AUTH
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name((dns_names or uris)[0]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + _VALIDITY)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        *(x509.DNSName(n) for n in dns_names),
                        *(x509.UniformResourceIdentifier(u) for u in uris),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context trusting this CA (hostname checked against the SNI sent)."""
        context = ssl.create_default_context(cadata=self.cert_pem.decode())
        return context


def certificate_names(der: bytes) -> list[str]:
    """The DNS names of a DER certificate (what a client saw)."""
    cert = x509.load_der_x509_certificate(der)
    return list(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
    )


def write_private(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path` atomically with `mode` from the start: a temporary file created 0600 in the
    same directory, then renamed over `path`, so no reader ever sees a partial or world-readable key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


# The identity of the harness's and `xdsbus up`'s Envoy (a SPIFFE id in its client certificate's SAN).
ENVOY_IDENTITY = "spiffe://xdsbus.local/gateway"


@dataclass(frozen=True)
class XdsPki:
    """The files of an xDS mTLS setup under one directory: the CA, the edge's server certificate and one
    Envoy client certificate (identity ENVOY_IDENTITY)."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def edge_cert(self) -> Path:
        return self.directory / "edge.crt"

    @property
    def edge_key(self) -> Path:
        return self.directory / "edge.key"

    @property
    def envoy_cert(self) -> Path:
        return self.directory / "envoy.crt"

    @property
    def envoy_key(self) -> Path:
        return self.directory / "envoy.key"

    def client(self) -> ClientTls:
        return ClientTls(self.ca_file, self.envoy_cert, self.envoy_key)

    def edge_flags(self) -> list[str]:
        """The edge's flags for mTLS with these files."""
        return [
            "--xds-tls-cert",
            str(self.edge_cert),
            "--xds-tls-key",
            str(self.edge_key),
            "--xds-client-ca",
            str(self.ca_file),
        ]

    def exists(self) -> bool:
        return all(
            p.exists() for p in (self.ca_file, self.edge_cert, self.edge_key, self.envoy_cert, self.envoy_key)
        )

    def create(self, ca: TestCA | None = None, *, edge_names: tuple[str, ...] = ()) -> XdsPki:
        """Issue and write every file (keys 0600, each written atomically); the edge's certificate names
        EDGE_SERVER_NAME, localhost and `edge_names`."""
        ca = ca or TestCA("xdsbus local CA")
        self.directory.mkdir(parents=True, exist_ok=True)
        edge = ca.issue(EDGE_SERVER_NAME, "localhost", *edge_names)
        envoy = ca.issue(client=True, uris=(ENVOY_IDENTITY,))
        write_private(self.ca_file, ca.cert_pem, 0o644)
        write_private(self.edge_key, edge.key_pem)
        write_private(self.edge_cert, edge.cert_pem, 0o644)
        write_private(self.envoy_key, envoy.key_pem)
        write_private(self.envoy_cert, envoy.cert_pem, 0o644)
        return self

    def ensure(self) -> XdsPki:
        """Create the files unless they all exist already (`xdsbus up` keeps its CA across runs)."""
        return self if self.exists() else self.create()
