"""The xDS port's transport security: TLS with the edge's certificate, mTLS once a client CA is given,
plaintext only on loopback (docs/design.md §10).

Certificate files are read again when they change (checked at each new TLS handshake, by modification
time), so a rotated certificate, cert-manager style, needs no restart.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class TlsConfigError(ValueError):
    """The TLS files cannot be used; the message names the file."""


@dataclass(frozen=True)
class ServerTls:
    """The edge's certificate and key (PEM files), and the CA that signs proxies' client certificates (None:
    server-only TLS, no client certificate asked for)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    @property
    def mutual(self) -> bool:
        return self.client_ca_file is not None

    def files(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file) + ((self.client_ca_file,) if self.client_ca_file else ())

    def credentials(self) -> grpc.ServerCredentials:
        """Server credentials that reload the files when they change."""
        loader = _Loader(self)
        return grpc.dynamic_ssl_server_credentials(
            loader.load(), loader.reload, require_client_authentication=self.mutual
        )


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback IP addresses (not for `0.0.0.0` or a name)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Loader:
    def __init__(self, tls: ServerTls) -> None:
        self.tls = tls
        self._stamp: tuple[float, ...] = ()

    def _read(self, path: Path) -> bytes:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise TlsConfigError(f"{path}: cannot read: {exc.strerror}") from exc
        if b"-----BEGIN" not in data:
            raise TlsConfigError(f"{path}: not a PEM file")
        return data

    def _stamps(self) -> tuple[float, ...]:
        try:
            return tuple(os.stat(p).st_mtime for p in self.tls.files())
        except OSError as exc:
            raise TlsConfigError(f"{exc.filename}: cannot read: {exc.strerror}") from exc

    def load(self) -> grpc.ServerCertificateConfiguration:
        stamp = self._stamps()
        tls = self.tls
        ca = self._read(tls.client_ca_file) if tls.client_ca_file else None
        config = grpc.ssl_server_certificate_configuration(
            [(self._read(tls.key_file), self._read(tls.cert_file))], root_certificates=ca
        )
        self._stamp = stamp
        return config

    def reload(self) -> grpc.ServerCertificateConfiguration | None:
        """Called by gRPC at each handshake: a new configuration when a file changed, else None."""
        try:
            if self._stamps() == self._stamp:
                return None
            config = self.load()
        except (OSError, TlsConfigError) as exc:
            # A half-written rotation: keep serving with what was loaded last, try again next handshake.
            log.warning("xDS TLS files not reloaded: %s", exc)
            return None
        log.info("xDS TLS files changed: reloaded %s", ", ".join(str(p) for p in self.tls.files()))
        return config
