"""The internal route model: listeners → virtual hosts → routes → weighted destinations.

Ingress (with its annotations), Gateway API and registry-driven routing all translate into these types;
Envoy resources are generated from them alone. Every field has a neutral default, so a plain route is
as small as before and each source sets only what it understands.
"""

from __future__ import annotations

import enum

import msgspec


class PathKind(enum.StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"


# PathMatch, Destination, RouteOrigin and Route, kept for every route of every Ingress, are frozen and hold
# only strings, numbers, enums and tuples of frozen structs: they cannot form a cycle, so the cyclic
# collector need not track them (gc=False, 16 bytes less each: ~15 per endpoint at 100k, bench
# builder_memory).
class PathMatch(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    kind: PathKind
    value: str


class StringMatchKind(enum.StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    SUFFIX = "suffix"
    CONTAINS = "contains"
    REGEX = "regex"
    # The header or parameter is present, whatever its value.
    PRESENT = "present"


class HeaderMatch(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """A request header condition; pseudo-headers (`:authority`, `:method`) are headers here too."""

    name: str
    kind: StringMatchKind = StringMatchKind.EXACT
    value: str = ""
    invert: bool = False


class QueryMatch(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """A query parameter condition."""

    name: str
    kind: StringMatchKind = StringMatchKind.EXACT
    value: str = ""


class HeaderMutation(msgspec.Struct, frozen=True, kw_only=True):
    """Headers to append, to overwrite and to remove, in that order of application by Envoy."""

    add: tuple[tuple[str, str], ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


class UpstreamTlsMode(enum.StrEnum):
    # Encrypt, verify the server only when `ca_secret` is set.
    SIMPLE = "simple"
    # Also present a client certificate.
    MUTUAL = "mutual"


class UpstreamTls(msgspec.Struct, frozen=True, kw_only=True):
    """TLS from Envoy to the backend. Secret names are SDS resource names (see `secret_name`)."""

    mode: UpstreamTlsMode = UpstreamTlsMode.SIMPLE
    client_secret: str = ""
    ca_secret: str = ""
    sni: str = ""
    verify: bool = False
    # Names the server certificate must carry when verifying (defaults to the SNI when empty).
    subject_alt_names: tuple[str, ...] = ()


class LbAlgorithm(enum.StrEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"
    RANDOM = "RANDOM"
    # Consistent hashing; the keys come from the route's hash policies.
    RING_HASH = "RING_HASH"
    MAGLEV = "MAGLEV"


class UpstreamProtocol(enum.StrEnum):
    # Whatever the service port says (ServicePort.protocol).
    DEFAULT = ""
    HTTP1 = "HTTP1"
    HTTP2 = "HTTP2"
    # Dubbo over Higress's dubbo_tcp upstream (Http2Rpc; only Higress's Envoy build has it).
    DUBBO = "DUBBO"


class UpstreamPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Cluster-level traffic policy for one destination. A non-default policy gets its own cluster,
    sharing the service's endpoints (see `policy_cluster_name`), so two Ingresses pointing at one
    Service with different policies do not overwrite each other."""

    lb: LbAlgorithm = LbAlgorithm.ROUND_ROBIN
    protocol: UpstreamProtocol = UpstreamProtocol.DEFAULT
    tls: UpstreamTls | None = None

    def is_default(self) -> bool:
        """True when this policy is exactly what the service's own cluster already does."""
        return self == DEFAULT_POLICY


DEFAULT_POLICY = UpstreamPolicy()


class Destination(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A weighted backend: the cluster of `hostname:port` under `policy`.

    `request_headers`/`response_headers` apply only to traffic sent to this destination (Gateway API
    per-backendRef filters); `fallback` is tried when this destination has no healthy endpoint.
    """

    hostname: str
    port: int
    weight: int = 1
    policy: UpstreamPolicy = DEFAULT_POLICY
    request_headers: HeaderMutation | None = None
    response_headers: HeaderMutation | None = None
    fallback: Destination | None = None


class Redirect(msgspec.Struct, frozen=True, kw_only=True):
    """Answer with a redirect. Empty fields keep the request's value; `path` replaces the whole path and
    `prefix` only the part the route's prefix matched (at most one of them is set)."""

    scheme: str = ""
    host: str = ""
    port: int = 0
    path: str = ""
    prefix: str = ""
    code: int = 302
    strip_query: bool = False
    # RE2 pattern over the path and its substitution, instead of `path`/`prefix` (at most one is set).
    regex: str = ""
    substitution: str = ""


class Rewrite(msgspec.Struct, frozen=True, kw_only=True):
    """Rewrite the request before forwarding. At most one of `path`, `prefix` and `regex` is set."""

    # Replace the whole path.
    path: str = ""
    # Replace the part the route's prefix matched.
    prefix: str = ""
    # RE2 pattern over the path and its substitution (`\1` for groups).
    regex: str = ""
    substitution: str = ""
    # Replace the Host/:authority header.
    host: str = ""


class CorsPolicy(msgspec.Struct, frozen=True, kw_only=True):
    allow_origins: tuple[tuple[StringMatchKind, str], ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    allow_credentials: bool = False
    max_age_seconds: int = 0


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Envoy retry policy: `retry_on` uses Envoy's condition names (`5xx`, `gateway-error`,
    `reset`, `connect-failure`, `retriable-status-codes`, ...)."""

    attempts: int
    retry_on: tuple[str, ...] = ("5xx",)
    retriable_status_codes: tuple[int, ...] = ()
    per_try_timeout_ms: int = 0
    # The shortest wait between tries, growing exponentially (with jitter) up to ten times it; None:
    # Envoy's default (25 ms). 0 asks for no wait, which Envoy approximates with its shortest (1 ms).
    backoff_ms: int | None = None


class HashKind(enum.StrEnum):
    HEADER = "header"
    COOKIE = "cookie"
    SOURCE_IP = "source_ip"
    QUERY = "query"


class HashPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """One key for consistent hashing. A COOKIE with `cookie_ttl_seconds` > 0 or `generate_cookie` is
    set by Envoy when the request lacks it (session affinity)."""

    kind: HashKind
    name: str = ""
    cookie_path: str = ""
    cookie_ttl_seconds: int = 0
    generate_cookie: bool = False


class Mirror(msgspec.Struct, frozen=True, kw_only=True):
    """Copy requests to another backend; `percent` of them, in millionths (1_000_000 is every one)."""

    destination: Destination
    millionths: int = 1_000_000


class ErrorPages(msgspec.Struct, frozen=True, kw_only=True):
    """Answers with one of `codes` from the backend are replaced by what `destination` answers."""

    codes: tuple[int, ...]
    destination: Destination


class LocalRateLimit(msgspec.Struct, frozen=True, kw_only=True):
    """A token bucket per route (Higress route-limit-*): `tokens_per_fill` every `fill_seconds`, at most
    `max_tokens` saved up; a request finding the bucket empty is answered `status`."""

    tokens_per_fill: int
    max_tokens: int
    fill_seconds: int
    status: int = 429


class DubboMethod(msgspec.Struct, frozen=True, kw_only=True):
    """One method of an Http2Rpc Dubbo service, as Higress's transcoder mapping names its parts.

    `params`: (extract_key_spec, extract_key, mapping_type); `body_type`: the Java type of the whole body
    as the single parameter (`paramFromEntireBody`, which replaces `params`); `headers_attach` is
    Http2Rpc's `headersAttach` ("" none, "*" all, else a comma list)."""

    name: str
    http_method: str
    http_path: str
    params: tuple[tuple[str, str, str], ...] = ()
    body_type: str | None = None
    headers_attach: str = ""


class DubboTranscoding(msgspec.Struct, frozen=True, kw_only=True):
    """HTTP to Dubbo transcoding of a route (Http2Rpc, only on Higress's Envoy build)."""

    service: str
    version: str
    group: str = ""
    methods: tuple[DubboMethod, ...] = ()


class RouteOrigin(msgspec.Struct, frozen=True, kw_only=True, order=True, gc=False):
    """Which object a route came from; conflicts resolve oldest first, then by namespace/name."""

    created: str
    kind: str
    key: str
    source: str = ""


class Route(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One match and what to do with matching requests.

    The action is, in priority order: `redirect`, then `destinations` (forward), then `direct_status`
    (answer locally, also used when no destination could be resolved).
    """

    path: PathMatch
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    # Allowed request methods; empty allows every method.
    methods: tuple[str, ...] = ()
    ignore_case: bool = False

    destinations: tuple[Destination, ...] = ()
    redirect: Redirect | None = None
    direct_status: int = 0
    direct_body: str = ""

    rewrite: Rewrite | None = None
    # 0: no route timeout (Envoy's 15 s default is not what Kubernetes users expect).
    timeout_ms: int = 0
    retry: RetryPolicy | None = None
    # What Envoy answers when a destination's cluster does not exist (0: its default, 503). Gateway API
    # routes point invalid backendRefs at a cluster that never exists and answer 500 for their share.
    cluster_not_found_status: int = 0
    cors: CorsPolicy | None = None
    request_headers: HeaderMutation | None = None
    response_headers: HeaderMutation | None = None
    mirrors: tuple[Mirror, ...] = ()
    hash_policies: tuple[HashPolicy, ...] = ()
    # Only clients from these CIDRs are served (403 otherwise); empty serves everyone.
    allow_source_ranges: tuple[str, ...] = ()
    error_pages: ErrorPages | None = None
    # Part of a traffic split over consecutive routes with the same match: Envoy draws one random value
    # per request and checks every route's fraction against that same draw (modulo a million), so with
    # cumulative values a < b the first route takes the draws below a, the next those in [a, b), and
    # the last route of the split, which has None, the rest. None: no such condition.
    split_millionths: int | None = None
    rate_limit: LocalRateLimit | None = None
    dubbo: DubboTranscoding | None = None

    origin: RouteOrigin
    # Envoy route name; the generator derives one from the origin when empty.
    name: str = ""


class VirtualHostModel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


class ListenerModel(msgspec.Struct, frozen=True, kw_only=True):
    """A plaintext HTTP listener and the route configuration it reads through RDS, or, when `route_tables`
    is set, the tables of its split route configuration through Scoped RDS (docs/route-table-split.md)."""

    name: str
    port: int
    route_config: str
    route_tables: int = 0


class TlsVersion(enum.StrEnum):
    AUTO = ""
    TLS1_0 = "TLSv1_0"
    TLS1_1 = "TLSv1_1"
    TLS1_2 = "TLSv1_2"
    TLS1_3 = "TLSv1_3"


class DownstreamTls(msgspec.Struct, frozen=True, kw_only=True):
    """Server-side TLS of one filter chain; secret names are SDS resource names."""

    cert_secret: str
    # Clients must present a certificate signed by this CA (mutual TLS) when set.
    client_ca_secret: str = ""
    min_version: TlsVersion = TlsVersion.AUTO
    max_version: TlsVersion = TlsVersion.AUTO
    cipher_suites: tuple[str, ...] = ()
    alpn: tuple[str, ...] = ("h2", "http/1.1")


class TlsFilterChainModel(msgspec.Struct, frozen=True, kw_only=True):
    """One SNI filter chain of an HTTPS listener: the server names it answers, its certificate and the
    route configuration its connection manager reads through RDS."""

    server_names: tuple[str, ...]
    tls: DownstreamTls
    route_config: str


class HttpsListenerModel(msgspec.Struct, frozen=True, kw_only=True):
    """A TLS listener choosing a filter chain by SNI; chains are ordered by the generator."""

    name: str
    port: int
    chains: tuple[TlsFilterChainModel, ...]
