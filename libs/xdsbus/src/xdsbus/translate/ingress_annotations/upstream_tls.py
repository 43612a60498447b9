"""Backend protocol and upstream TLS (Higress upstreamtls.go, N+H).

backend-protocol: HTTP (default), HTTP2, HTTPS, GRPC, GRPCS (any case). HTTP2/GRPC/GRPCS speak HTTP/2 to
the backend; HTTPS/GRPCS encrypt without verifying the server (Higress insecureSkipVerify).
proxy-ssl-secret `[namespace/]name` switches to mutual TLS with that Secret's certificate; with
proxy-ssl-verify "on" the server is verified against the Secret's CA. proxy-ssl-name is the SNI, used
only with proxy-ssl-server-name "on". As in Higress, TLS settings need an HTTPS or GRPCS backend protocol:
with plain HTTP they have no effect (reported).
"""

from __future__ import annotations

import msgspec

from xdsbus.model.routes import UpstreamProtocol, UpstreamTls, UpstreamTlsMode
from xdsbus.model.secrets import ca_secret_name, secret_name
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, namespaced_parser, parse_on_off

_PROTOCOLS = ("HTTP", "HTTP2", "HTTPS", "GRPC", "GRPCS")
_H2 = frozenset({"HTTP2", "GRPC", "GRPCS"})
_TLS = frozenset({"HTTPS", "GRPCS"})


class UpstreamSpec(msgspec.Struct, frozen=True, kw_only=True):
    protocol: UpstreamProtocol = UpstreamProtocol.DEFAULT
    tls: UpstreamTls | None = None


def _protocol(text: str) -> str:
    proto = text.strip().upper()
    if proto not in _PROTOCOLS:
        raise ValueError(f"is not a backend protocol ({', '.join(_PROTOCOLS)})")
    return proto


def _sni(text: str) -> str:
    if any(c.isspace() or c == "/" for c in text):
        raise ValueError("is not a server name")
    return text


def parse_upstream(r: AnnotationReader, namespace: str) -> UpstreamSpec | None:
    if not (r.has("backend-protocol") or r.has("proxy-ssl-secret")):
        return None
    proto = r.value("backend-protocol", _protocol) or "HTTP"
    secret = r.get("proxy-ssl-secret", namespaced_parser(namespace, "Secret"))
    verify = bool(r.value("proxy-ssl-verify", parse_on_off))
    sni = r.value("proxy-ssl-name", _sni) or ""
    if not r.value("proxy-ssl-server-name", parse_on_off):
        sni = ""
    tls: UpstreamTls | None = None
    if proto in _TLS:
        if secret is not None:
            ns, name = secret.value
            tls = UpstreamTls(
                mode=UpstreamTlsMode.MUTUAL,
                client_secret=secret_name(ns, name),
                ca_secret=ca_secret_name(ns, name) if verify else "",
                verify=verify,
                sni=sni,
            )
        else:
            tls = UpstreamTls(mode=UpstreamTlsMode.SIMPLE, sni=sni)
    elif secret is not None:
        r.add(secret.key, secret.raw, f"has no effect: backend-protocol is {proto}, not HTTPS or GRPCS")
    spec = UpstreamSpec(
        protocol=UpstreamProtocol.HTTP2 if proto in _H2 else UpstreamProtocol.DEFAULT, tls=tls
    )
    return None if spec == UpstreamSpec() else spec
