"""All Ingress annotations of one object, parsed once into typed settings."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from xdsbus.model.routes import CorsPolicy, LocalRateLimit, RetryPolicy
from xdsbus.translate.ingress_annotations.canary import CanarySpec, parse_canary
from xdsbus.translate.ingress_annotations.cors import parse_cors
from xdsbus.translate.ingress_annotations.destination import DestinationSpec, parse_destination
from xdsbus.translate.ingress_annotations.downstream_tls import DownstreamTlsSpec, parse_downstream_tls
from xdsbus.translate.ingress_annotations.fallback import FallbackSpec, parse_fallback
from xdsbus.translate.ingress_annotations.header_control import HeaderControlSpec, parse_header_control
from xdsbus.translate.ingress_annotations.ignored import report_ignored
from xdsbus.translate.ingress_annotations.ip_access import parse_allow_source_ranges
from xdsbus.translate.ingress_annotations.load_balance import LoadBalanceSpec, parse_load_balance
from xdsbus.translate.ingress_annotations.match import MatchSpec, parse_match
from xdsbus.translate.ingress_annotations.mirror import MirrorSpec, parse_mirror
from xdsbus.translate.ingress_annotations.rate_limit import parse_rate_limit
from xdsbus.translate.ingress_annotations.reader import AnnotationReader
from xdsbus.translate.ingress_annotations.redirect import RedirectSpec, parse_redirect
from xdsbus.translate.ingress_annotations.retry import parse_retry
from xdsbus.translate.ingress_annotations.rewrite import RewriteSpec, parse_rewrite
from xdsbus.translate.ingress_annotations.rpc_destination import RpcDestination, parse_rpc_destination
from xdsbus.translate.ingress_annotations.timeout import parse_timeout_ms
from xdsbus.translate.ingress_annotations.upstream_tls import UpstreamSpec, parse_upstream


class ParsedAnnotations(msgspec.Struct, frozen=True, kw_only=True):
    """What the annotations of one Ingress ask for; `problems` lists every value that was not usable."""

    canary: CanarySpec | None = None
    rewrite: RewriteSpec | None = None
    redirect: RedirectSpec | None = None
    cors: CorsPolicy | None = None
    retry: RetryPolicy | None = None
    timeout_ms: int = 0
    load_balance: LoadBalanceSpec | None = None
    allow_source_ranges: tuple[str, ...] = ()
    header_control: HeaderControlSpec = HeaderControlSpec()
    mirror: MirrorSpec | None = None
    upstream: UpstreamSpec | None = None
    downstream_tls: DownstreamTlsSpec | None = None
    fallback: FallbackSpec | None = None
    match: MatchSpec = MatchSpec()
    destination: DestinationSpec | None = None
    rate_limit: LocalRateLimit | None = None
    rpc_destination: RpcDestination | None = None
    problems: tuple[str, ...] = ()


_NONE = ParsedAnnotations()


def parse_annotations(annotations: Mapping[str, str], *, namespace: str = "default") -> ParsedAnnotations:
    """Parse the annotations Higress understands; `namespace` (the Ingress's) completes `[ns/]name`
    references. Annotations nothing reads are problems saying why (Higress ignores them silently)."""
    r = AnnotationReader(annotations)
    if r.empty:
        return _NONE
    parsed = ParsedAnnotations(
        canary=parse_canary(r),
        rewrite=parse_rewrite(r),
        redirect=parse_redirect(r),
        cors=parse_cors(r),
        retry=parse_retry(r),
        timeout_ms=parse_timeout_ms(r),
        load_balance=parse_load_balance(r),
        allow_source_ranges=parse_allow_source_ranges(r),
        header_control=parse_header_control(r),
        mirror=parse_mirror(r, namespace),
        upstream=parse_upstream(r, namespace),
        downstream_tls=parse_downstream_tls(r, namespace),
        fallback=parse_fallback(r, namespace),
        match=parse_match(r),
        destination=parse_destination(r),
        rate_limit=parse_rate_limit(r),
        rpc_destination=parse_rpc_destination(r),
    )
    report_ignored(r)
    return msgspec.structs.replace(parsed, problems=tuple(r.problems))
