"""Http2Rpc (`networking.higress.io/v1`, docs/higress.md §4): HTTP routes transcoded to Dubbo calls.

`parse_http2rpc` reads the object as Higress's controller does; the builders below write the Envoy
configuration Higress's EnvoyFilter patches produce (`pkg/ingress/config/ingress_config.go`,
`constructHttp2RpcEnvoyFilter` and `constructHttp2RpcMethods`), for Higress's Envoy build only: the
route's transcoder config and CONNECT upgrade, the `dubbo_tcp` upstream of the destination's cluster, and
the transcoder filter before the router. Values are TypedStructs, as Higress writes them, because their
protos exist only in that build.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.core.v3 import extension_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2
from udpa.type.v1 import typed_struct_pb2

from xdsbus.contract.type_urls import LISTENER
from xdsbus.model.routes import DubboMethod, DubboTranscoding
from xdsbus.translate.resource_table import ResourceTable

HTTP2RPC_KIND = "Http2Rpc"
DUBBO_TRANSCODER_FILTER = "envoy.filters.http.http_dubbo_transcoder"
DUBBO_TRANSCODER_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.http.http_dubbo_transcoder.v3.HttpDubboTranscoder"
)
_ROUTER = "envoy.filters.http.router"
DUBBO_UPSTREAM = "envoy.upstreams.http.dubbo_tcp"
DUBBO_UPSTREAM_TYPE = (
    "type.googleapis.com/envoy.extensions.upstreams.http.dubbo_tcp.v3.DubboTcpConnectionPoolProto"
)

# ingress_config.go Http2RpcMethodMap and Http2RpcParamSourceMap.
_METHODS = {
    "GET": "ALL_GET",
    "POST": "ALL_POST",
    "PUT": "ALL_PUT",
    "DELETE": "ALL_DELETE",
    "PATCH": "ALL_PATCH",
}
_SOURCES = {"QUERY": "ALL_QUERY_PARAMETER", "HEADER": "ALL_HEADER", "PATH": "ALL_PATH", "BODY": "ALL_BODY"}


class Http2RpcError(ValueError):
    """An Http2Rpc that cannot be used; the message is its status reason."""


def _text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = obj.get(key, "")
    if not isinstance(value, str):
        raise Http2RpcError(f"{where}.{key} is not a string")
    if required and not value:
        raise Http2RpcError(f"{where}.{key} is required")
    return value


def _method(raw: Any, where: str) -> DubboMethod:
    if not isinstance(raw, Mapping):
        raise Http2RpcError(f"{where} is not an object")
    http_methods = raw.get("httpMethods")
    if not isinstance(http_methods, list) or not http_methods or not isinstance(http_methods[0], str):
        raise Http2RpcError(f"{where}.httpMethods is required (Higress uses its first entry)")
    if http_methods[0] not in _METHODS:
        raise Http2RpcError(f"{where}.httpMethods[0] {http_methods[0]!r} is not one of {', '.join(_METHODS)}")
    body = raw.get("paramFromEntireBody")
    params: list[tuple[str, str, str]] = []
    body_type = None
    if isinstance(body, Mapping):
        # paramFromEntireBody replaces params (a method with a single parameter).
        body_type = _text(body, "paramType", f"{where}.paramFromEntireBody")
    else:
        for j, param in enumerate(raw.get("params") or []):
            at = f"{where}.params[{j}]"
            if not isinstance(param, Mapping):
                raise Http2RpcError(f"{at} is not an object")
            source = _text(param, "paramSource", at)
            if source not in _SOURCES:
                raise Http2RpcError(f"{at}.paramSource {source!r} is not one of {', '.join(_SOURCES)}")
            params.append((_SOURCES[source], _text(param, "paramKey", at), _text(param, "paramType", at)))
    return DubboMethod(
        name=_text(raw, "serviceMethod", where),
        http_method=_METHODS[http_methods[0]],
        http_path=_text(raw, "httpPath", where),
        params=tuple(params),
        body_type=body_type,
        headers_attach=_text(raw, "headersAttach", where, required=False),
    )


def parse_http2rpc(body: Any) -> DubboTranscoding:
    """The Dubbo transcoding an Http2Rpc event body describes; Http2RpcError says why it has none."""
    spec = body.get("spec") if isinstance(body, Mapping) else None
    if not isinstance(spec, Mapping):
        raise Http2RpcError("spec is missing")
    dubbo = spec.get("dubbo")
    if not isinstance(dubbo, Mapping):
        if "grpc" in spec:
            raise Http2RpcError("spec.grpc is not implemented: only Dubbo services are (as in Higress)")
        raise Http2RpcError("spec.dubbo is required (only Dubbo services are implemented, as in Higress)")
    methods = dubbo.get("methods")
    if not isinstance(methods, list) or not methods:
        raise Http2RpcError("spec.dubbo.methods is required")
    return DubboTranscoding(
        service=_text(dubbo, "service", "spec.dubbo"),
        version=_text(dubbo, "version", "spec.dubbo"),
        group=_text(dubbo, "group", "spec.dubbo", required=False),
        methods=tuple(_method(m, f"spec.dubbo.methods[{i}]") for i, m in enumerate(methods)),
    )


# -- Envoy configuration for Higress's build -------------------------------------------------------


def _typed_struct(type_url: str, value: dict[str, Any] | None = None) -> any_pb2.Any:
    typed = typed_struct_pb2.TypedStruct(type_url=type_url)
    if value is not None:
        typed.value.update(value)
    out = any_pb2.Any()
    out.Pack(typed)
    return out


def _method_mapping(method: DubboMethod) -> dict[str, Any]:
    params: list[dict[str, str]] | None
    if method.body_type is not None:
        params = [{"extract_key_spec": _SOURCES["BODY"], "mapping_type": method.body_type}]
    else:
        # Go marshals a method without params as `null`.
        params = [
            {"extract_key": key, "extract_key_spec": spec, "mapping_type": java}
            for spec, key, java in method.params
        ] or None
    passthrough: dict[str, Any]
    if method.headers_attach == "":
        passthrough = {"passthrough_all_headers": False}
    elif method.headers_attach == "*":
        passthrough = {"passthrough_all_headers": True}
    else:
        passthrough = {"passthrough_headers": method.headers_attach}
    return {
        "name": method.name,
        "parameter_mapping": params,
        "path_matcher": {"match_http_method_spec": method.http_method, "match_pattern": method.http_path},
        "passthrough_setting": passthrough,
    }


def transcoder_config(dubbo: DubboTranscoding) -> dict[str, Any]:
    """The HttpDubboTranscoder value of a route (constructHttp2RpcMethods' template)."""
    mapping: dict[str, Any] = {
        "name": dubbo.service,
        "version": dubbo.version,
        "method_mapping": [_method_mapping(m) for m in dubbo.methods],
    }
    if dubbo.group:
        mapping["group"] = dubbo.group
    return {
        "request_validation_options": {
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
        "services_mapping": mapping,
        "url_unescape_spec": "ALL_CHARACTERS_EXCEPT_RESERVED",
    }


def apply_dubbo_route(route: rc.Route, dubbo: DubboTranscoding) -> None:
    """What Higress's HTTP_ROUTE MERGE patch adds to a forwarding route."""
    route.route.upgrade_configs.append(
        rc.RouteAction.UpgradeConfig(
            upgrade_type="CONNECT",
            connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig(allow_post=True),
        )
    )
    route.typed_per_filter_config[DUBBO_TRANSCODER_FILTER].CopyFrom(
        _typed_struct(DUBBO_TRANSCODER_TYPE, transcoder_config(dubbo))
    )


def dubbo_upstream_config() -> extension_pb2.TypedExtensionConfig:
    """What Higress's CLUSTER MERGE patch sets as the destination cluster's `upstream_config`."""
    return extension_pb2.TypedExtensionConfig(
        name=DUBBO_UPSTREAM, typed_config=_typed_struct(DUBBO_UPSTREAM_TYPE)
    )


def dubbo_transcoder_filter() -> hcm.HttpFilter:
    """The HTTP filter Higress inserts once before the router (HTTP_FILTER INSERT_BEFORE)."""
    return hcm.HttpFilter(name=DUBBO_TRANSCODER_FILTER, typed_config=_typed_struct(DUBBO_TRANSCODER_TYPE))


class DubboTranscoderPatch:
    """Inserts the transcoder filter before the router in every connection manager of the Ingress
    ports' listeners, as Higress's HTTP_FILTER INSERT_BEFORE patch does, after they are (re)built. Only on
    Higress's data plane; a listener already patched is not parsed again."""

    def __init__(self, table: ResourceTable, listeners: tuple[str, ...]) -> None:
        self._table = table
        self._listeners = listeners
        # Per listener, the sha256 of the body this patch last published.
        self._patched: dict[str, str] = {}

    def apply(self) -> None:
        """Patch every listener whose body changed since it was last patched."""
        for name in self._listeners:
            current = self._table.get(LISTENER, name)
            if current is None or self._patched.get(name) == current.sha256:
                continue
            listener = listener_pb2.Listener()
            wrapper = any_pb2.Any()
            wrapper.ParseFromString(current.body)
            wrapper.Unpack(listener)
            for chain in listener.filter_chains:
                for network_filter in chain.filters:
                    _insert_transcoder(network_filter)
            self._table.put(LISTENER, name, listener.SerializeToString(deterministic=True))
            patched = self._table.get(LISTENER, name)
            assert patched is not None
            self._patched[name] = patched.sha256


def _insert_transcoder(network_filter: listener_components_pb2.Filter) -> None:
    manager = hcm.HttpConnectionManager()
    if not network_filter.typed_config.Unpack(manager):
        return
    names = [f.name for f in manager.http_filters]
    if DUBBO_TRANSCODER_FILTER in names or _ROUTER not in names:
        return
    manager.http_filters.insert(names.index(_ROUTER), dubbo_transcoder_filter())
    network_filter.typed_config.Pack(manager)
