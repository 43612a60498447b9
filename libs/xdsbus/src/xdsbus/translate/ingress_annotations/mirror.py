"""Traffic mirroring (Higress mirror.go, N+H).

mirror-target-fqdn (+ mirror-target-fqdn-port, default 80) wins over mirror-target-service
(`[namespace/]name[:port]`; the Service must exist, its first port by default: checked at translation).
mirror-percentage applies only below 100.
"""

from __future__ import annotations

import msgspec

from xdsbus.translate.ingress_annotations.reader import (
    HOST_NAME,
    AnnotationReader,
    ServiceRef,
    parse_port,
    service_parser,
)

DEFAULT_FQDN_PORT = 80
EVERY_REQUEST = 1_000_000


class MirrorSpec(msgspec.Struct, frozen=True, kw_only=True):
    service: ServiceRef | None = None
    fqdn: str = ""
    fqdn_port: int = DEFAULT_FQDN_PORT
    # Share of requests copied, in millionths.
    millionths: int = EVERY_REQUEST


def _fqdn(text: str) -> str:
    if not HOST_NAME.fullmatch(text):
        raise ValueError("is not a host name")
    return text


def parse_mirror(r: AnnotationReader, namespace: str) -> MirrorSpec | None:
    if not (r.has("mirror-target-fqdn") or r.has("mirror-target-service")):
        return None
    percent = r.integer("mirror-percentage", minimum=0)
    millionths = EVERY_REQUEST if percent is None or percent >= 100 else percent * 10_000
    fqdn = r.value("mirror-target-fqdn", _fqdn)
    if fqdn:
        port = r.value("mirror-target-fqdn-port", parse_port) or DEFAULT_FQDN_PORT
        return MirrorSpec(fqdn=fqdn, fqdn_port=port, millionths=millionths)
    found = r.get("mirror-target-service", service_parser(namespace))
    if found is None:
        return None
    ns, name, port = found.value
    return MirrorSpec(
        service=ServiceRef(namespace=ns, name=name, port=port, ref=r.ref(found)), millionths=millionths
    )
