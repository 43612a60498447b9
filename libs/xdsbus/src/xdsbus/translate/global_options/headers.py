"""`addXRealIpHeader` and `disableXEnvoyHeaders`, both off by default (Higress's
`pkg/ingress/kube/configmap/global.go`, NewDefaultGlobalOption)."""

from __future__ import annotations

from xdsbus.translate.global_options.values import Section


def parse_headers(section: Section) -> tuple[bool, bool]:
    """(add x-real-ip, suppress x-envoy headers) from the top level of higress-config."""
    return (
        section.boolean("addXRealIpHeader", False),
        section.boolean("disableXEnvoyHeaders", False),
    )
