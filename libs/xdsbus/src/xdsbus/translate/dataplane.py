"""Which Envoy build the builder translates for (`--dataplane`, docs/higress.md §4).

Stock Envoy is the default. Higress's Envoy build adds filters (the HTTP-to-Dubbo transcoder and the
Dubbo TCP upstream) that Http2Rpc needs; without them an Http2Rpc is reported unsupported, never served
as plain HTTP.
"""

from __future__ import annotations

ENVOY = "envoy"
HIGRESS = "higress"
DATAPLANES = (ENVOY, HIGRESS)

UNSUPPORTED_HTTP2RPC = (
    "unsupported on this data plane (needs Higress's Envoy build; run the builder with --dataplane higress)"
)
