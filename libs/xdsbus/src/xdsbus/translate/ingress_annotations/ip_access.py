"""IP allow list (Higress ip_access_control.go, N+H): whitelist-source-range, a comma list of IPs and
CIDRs. A single address becomes a /32 (IPv4) or /128 (IPv6) range; host bits are masked off."""

from __future__ import annotations

import ipaddress

from xdsbus.translate.ingress_annotations.reader import AnnotationReader, split_list


def parse_allow_source_ranges(r: AnnotationReader) -> tuple[str, ...]:
    found = r.get("whitelist-source-range", split_list)
    if found is None:
        return ()
    ranges: list[str] = []
    bad: list[str] = []
    for item in found.value:
        try:
            network = str(ipaddress.ip_network(item, strict=False))
        except ValueError:
            bad.append(item)
            continue
        if network not in ranges:
            ranges.append(network)
    if bad and ranges:
        r.add(found.key, found.raw, f"has invalid IP ranges {', '.join(bad)}: they are left out")
    elif bad:
        r.add(
            found.key, found.raw, "has no valid IP range: the allow list is ignored (every client is served)"
        )
    return tuple(ranges)
