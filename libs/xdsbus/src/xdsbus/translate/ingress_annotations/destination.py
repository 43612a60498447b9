"""Registry destinations (Higress destination.go, H only): `higress.io/destination`.

One destination per line: `[<weight>%] <host>[:<port>] [<subset>]`; weight 100 by default, port 80 by
default. Used when a path's backend is the McpBridge resource (or has no Service). Hosts are registry
hostnames (`svc.DEFAULT-GROUP.public.nacos`, `x.static`, ...) or any FQDN; they need no lookup. Weights
should add up to 100 (a different sum is reported, and the weights are scaled as Higress does).
"""

from __future__ import annotations

import msgspec

from xdsbus.translate.ingress_annotations.reader import (
    HOST_NAME,
    AnnotationReader,
    AnnotationRef,
    parse_port,
    quote,
)

DEFAULT_WEIGHT = 100
DEFAULT_PORT = 80


class DestinationLine(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int = DEFAULT_PORT
    weight: int = DEFAULT_WEIGHT
    subset: str = ""


class DestinationSpec(msgspec.Struct, frozen=True, kw_only=True):
    lines: tuple[DestinationLine, ...]
    ref: AnnotationRef


def _line(line: str) -> DestinationLine:
    fields = line.split()
    weight = DEFAULT_WEIGHT
    if fields[0].endswith("%"):
        text = fields.pop(0)[:-1]
        if not text.isdigit():
            raise ValueError(f"has line {quote(line)} whose weight is not a whole percentage")
        weight = int(text)
    if not fields or len(fields) > 2:
        raise ValueError(f"has line {quote(line)} that is not '[<weight>%] <host>[:<port>] [<subset>]'")
    host, port = fields[0], DEFAULT_PORT
    if ":" in host:
        host, _, port_text = host.rpartition(":")
        try:
            port = parse_port(port_text)
        except ValueError:
            raise ValueError(f"has line {quote(line)} whose port is not a port number") from None
    if not HOST_NAME.fullmatch(host):
        raise ValueError(f"has line {quote(line)} whose host is not a host name")
    return DestinationLine(host=host, port=port, weight=weight, subset=fields[1] if len(fields) > 1 else "")


def _lines(text: str) -> tuple[DestinationLine, ...]:
    return tuple(_line(line) for line in text.split("\n") if line.strip())


def parse_destination(r: AnnotationReader) -> DestinationSpec | None:
    found = r.get("destination", _lines, higress_only=True)
    if found is None:
        return None
    spec = DestinationSpec(lines=found.value, ref=r.ref(found))
    total = sum(line.weight for line in spec.lines)
    if total != 100:
        r.add(found.key, found.raw, f"has weights adding up to {total}, not 100")
    if total == 0:
        return None
    for line in spec.lines:
        if line.subset:
            r.add(found.key, found.raw, f"names subset {line.subset!r}: subsets are not supported, ignored")
    return spec
