"""`downstream`: client connections. Names, ranges and defaults from Higress's
`pkg/ingress/kube/configmap/global.go` (validGlobal, NewDefaultDownstream, NewDefaultHttp2)."""

from __future__ import annotations

from xdsbus.translate.global_options.model import DownstreamOptions, Http2Options
from xdsbus.translate.global_options.values import Section

_INT32_MAX = 2**31 - 1
_UINT32_MAX = 2**32 - 1
# Envoy refuses a timeout over 315576000000 s (protobuf Duration); a uint32 of seconds stays under it.
_MAX_SECONDS = _UINT32_MAX


def parse_downstream(section: Section) -> DownstreamOptions:
    """The `downstream` section; each missing or bad key takes Higress's default."""
    d = DownstreamOptions()
    options = DownstreamOptions(
        idle_timeout=section.integer("idleTimeout", d.idle_timeout, 0, _MAX_SECONDS),
        # Envoy's max_request_headers_kb is 1..8192 (Higress checks only the upper bound).
        max_request_headers_kb=section.integer("maxRequestHeadersKb", d.max_request_headers_kb, 1, 8192),
        connection_buffer_limits=section.integer(
            "connectionBufferLimits", d.connection_buffer_limits, 1, _UINT32_MAX
        ),
        http2=_parse_http2(section.child("http2")),
    )
    if section.raw("routeTimeout") not in (None, 0):
        section.problems.append(
            f"{section.key('routeTimeout')}: not applied by xdsbus (routes keep their own timeouts)"
        )
    section.report_unknown()
    return options


def _parse_http2(section: Section) -> Http2Options:
    d = Http2Options()
    options = Http2Options(
        max_concurrent_streams=section.integer(
            "maxConcurrentStreams", d.max_concurrent_streams, 1, _INT32_MAX
        ),
        initial_stream_window_size=section.integer(
            "initialStreamWindowSize", d.initial_stream_window_size, 65535, _INT32_MAX
        ),
        initial_connection_window_size=section.integer(
            "initialConnectionWindowSize", d.initial_connection_window_size, 65535, _INT32_MAX
        ),
    )
    section.report_unknown()
    return options
