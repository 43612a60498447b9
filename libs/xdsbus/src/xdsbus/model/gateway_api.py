"""Typed views of the Gateway API objects (gateway.networking.k8s.io v1; ReferenceGrant v1beta1 has the
same shape), decoded from event bodies like `model.k8s`.

Only the fields translation uses are declared; everything else in a body is ignored.
"""

from __future__ import annotations

import msgspec

from xdsbus.model.k8s import ObjectMeta

GATEWAY_GROUP = "gateway.networking.k8s.io"

GATEWAY_CLASS_KIND = "GatewayClass"
GATEWAY_KIND = "Gateway"
HTTP_ROUTE_KIND = "HTTPRoute"
GRPC_ROUTE_KIND = "GRPCRoute"
REFERENCE_GRANT_KIND = "ReferenceGrant"
NAMESPACE_KIND = "Namespace"


class _Api(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


# -- shared -------------------------------------------------------------------------------------


class LabelSelectorRequirement(_Api):
    key: str
    operator: str
    values: list[str] = []


class LabelSelector(_Api):
    match_labels: dict[str, str] = {}
    match_expressions: list[LabelSelectorRequirement] = []


class SecretObjectReference(_Api):
    name: str
    group: str = ""
    kind: str = "Secret"
    namespace: str | None = None


class BackendRef(_Api):
    name: str
    group: str = ""
    kind: str = "Service"
    namespace: str | None = None
    port: int | None = None
    weight: int = 1


class ParentReference(_Api):
    name: str
    group: str = GATEWAY_GROUP
    kind: str = GATEWAY_KIND
    namespace: str | None = None
    section_name: str | None = None
    port: int | None = None


class HTTPHeader(_Api):
    name: str
    value: str


class HeaderModifier(_Api):
    set: list[HTTPHeader] = []
    add: list[HTTPHeader] = []
    remove: list[str] = []


class Fraction(_Api):
    numerator: int
    denominator: int = 100


class RequestMirror(_Api):
    backend_ref: BackendRef
    percent: int | None = None
    fraction: Fraction | None = None


class HTTPPathModifier(_Api):
    type: str
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None


class RequestRedirect(_Api):
    scheme: str | None = None
    hostname: str | None = None
    path: HTTPPathModifier | None = None
    port: int | None = None
    status_code: int = 302


class URLRewrite(_Api):
    hostname: str | None = None
    path: HTTPPathModifier | None = None


class HTTPCORSFilter(_Api):
    allow_origins: list[str] = []
    allow_credentials: bool = False
    allow_methods: list[str] = []
    allow_headers: list[str] = []
    expose_headers: list[str] = []
    max_age: int = 5


class HTTPRouteFilter(_Api):
    type: str
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None
    request_mirror: RequestMirror | None = None
    cors: HTTPCORSFilter | None = None


# -- GatewayClass and Gateway -------------------------------------------------------------------


class GatewayClassSpec(_Api):
    controller_name: str = ""


class GatewayClass(_Api):
    metadata: ObjectMeta
    spec: GatewayClassSpec = msgspec.field(default_factory=GatewayClassSpec)


class GatewayTLSConfig(_Api):
    mode: str = "Terminate"
    certificate_refs: list[SecretObjectReference] = []


class RouteNamespaces(_Api):
    from_: str = msgspec.field(default="Same", name="from")
    selector: LabelSelector | None = None


class RouteGroupKind(_Api):
    kind: str
    group: str = GATEWAY_GROUP


class AllowedRoutes(_Api):
    namespaces: RouteNamespaces = msgspec.field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] = []


class Listener(_Api):
    name: str
    port: int
    protocol: str
    hostname: str | None = None
    tls: GatewayTLSConfig | None = None
    allowed_routes: AllowedRoutes = msgspec.field(default_factory=AllowedRoutes)


class GatewayAddress(_Api):
    # Without a value, the Gateway asks for any address of the type (GatewayOptionalAddressValue).
    value: str = ""
    type: str = "IPAddress"


class GatewaySpec(_Api):
    gateway_class_name: str
    listeners: list[Listener] = []
    addresses: list[GatewayAddress] = []


class Gateway(_Api):
    metadata: ObjectMeta
    spec: GatewaySpec


# -- routes -------------------------------------------------------------------------------------


class HTTPPathMatch(_Api):
    type: str = "PathPrefix"
    value: str = "/"


class HTTPHeaderMatch(_Api):
    name: str
    value: str
    type: str = "Exact"


class HTTPRouteMatch(_Api):
    path: HTTPPathMatch | None = None
    headers: list[HTTPHeaderMatch] = []
    query_params: list[HTTPHeaderMatch] = []
    method: str | None = None


class HTTPBackendRef(BackendRef):
    filters: list[HTTPRouteFilter] = []


class HTTPRouteTimeouts(_Api):
    request: str | None = None
    backend_request: str | None = None


class HTTPRouteRetry(_Api):
    codes: list[int] = []
    attempts: int | None = None
    backoff: str | None = None


class HTTPRouteRule(_Api):
    name: str | None = None
    matches: list[HTTPRouteMatch] = []
    filters: list[HTTPRouteFilter] = []
    backend_refs: list[HTTPBackendRef] = []
    timeouts: HTTPRouteTimeouts | None = None
    retry: HTTPRouteRetry | None = None


class HTTPRouteSpec(_Api):
    parent_refs: list[ParentReference] = []
    hostnames: list[str] = []
    rules: list[HTTPRouteRule] = []


class HTTPRoute(_Api):
    metadata: ObjectMeta
    spec: HTTPRouteSpec = msgspec.field(default_factory=HTTPRouteSpec)


class GRPCMethodMatch(_Api):
    type: str = "Exact"
    service: str | None = None
    method: str | None = None


class GRPCRouteMatch(_Api):
    method: GRPCMethodMatch | None = None
    headers: list[HTTPHeaderMatch] = []


class GRPCRouteRule(_Api):
    name: str | None = None
    matches: list[GRPCRouteMatch] = []
    filters: list[HTTPRouteFilter] = []
    backend_refs: list[HTTPBackendRef] = []


class GRPCRouteSpec(_Api):
    parent_refs: list[ParentReference] = []
    hostnames: list[str] = []
    rules: list[GRPCRouteRule] = []


class GRPCRoute(_Api):
    metadata: ObjectMeta
    spec: GRPCRouteSpec = msgspec.field(default_factory=GRPCRouteSpec)


# -- ReferenceGrant and Namespace ---------------------------------------------------------------


class ReferenceGrantFrom(_Api):
    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(_Api):
    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(_Api):
    from_: list[ReferenceGrantFrom] = msgspec.field(default_factory=list, name="from")
    to: list[ReferenceGrantTo] = []


class ReferenceGrant(_Api):
    metadata: ObjectMeta
    spec: ReferenceGrantSpec = msgspec.field(default_factory=ReferenceGrantSpec)


class Namespace(_Api):
    metadata: ObjectMeta
