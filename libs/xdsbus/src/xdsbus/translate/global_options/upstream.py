"""`upstream`: connections to backends. Names and defaults from Higress's
`pkg/ingress/kube/configmap/global.go` (NewDefaultUpStream)."""

from __future__ import annotations

from xdsbus.translate.global_options.model import UpstreamOptions
from xdsbus.translate.global_options.values import Section

_UINT32_MAX = 2**32 - 1


def parse_upstream(section: Section) -> UpstreamOptions:
    """The `upstream` section; each missing or bad key takes Higress's default."""
    d = UpstreamOptions()
    options = UpstreamOptions(
        idle_timeout=section.integer("idleTimeout", d.idle_timeout, 0, _UINT32_MAX),
        connection_buffer_limits=section.integer(
            "connectionBufferLimits", d.connection_buffer_limits, 1, _UINT32_MAX
        ),
    )
    section.report_unknown()
    return options
