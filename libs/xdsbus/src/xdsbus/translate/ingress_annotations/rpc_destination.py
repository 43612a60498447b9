"""`higress.io/rpc-destination-name` (Higress http2rpc.go, H only): the Ingress's routes are transcoded
from HTTP to Dubbo as the named Http2Rpc object says (docs/higress.md §4)."""

from __future__ import annotations

import msgspec

from xdsbus.translate.ingress_annotations.reader import AnnotationReader, AnnotationRef

_NAME = "rpc-destination-name"


class RpcDestination(msgspec.Struct, frozen=True, kw_only=True):
    """The Http2Rpc object an Ingress names (by name: Higress keys them by name alone)."""

    name: str
    ref: AnnotationRef


def parse_rpc_destination(r: AnnotationReader) -> RpcDestination | None:
    found = r.get(_NAME, str, higress_only=True)
    return None if found is None else RpcDestination(name=found.value, ref=r.ref(found))
