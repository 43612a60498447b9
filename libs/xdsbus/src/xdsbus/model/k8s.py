"""Typed views of the Kubernetes objects the translator reads, decoded from event bodies.

Only the fields translation uses are declared; everything else in a body is ignored. Decoding failures
name the field, which becomes the rejection reason reported on the object.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

T = TypeVar("T")

# A port number Envoy can hold (uint32 in the API, 1-65535 in Kubernetes). Declared on every port that
# reaches an Envoy address, so an impossible one rejects its object instead of failing the build.
PortNumber = Annotated[int, msgspec.Meta(ge=1, le=65535)]


class _K8s(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


class ObjectMeta(_K8s):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: str = ""
    generation: int = 0


class ServicePortSpec(_K8s):
    port: int
    name: str = ""
    protocol: str = "TCP"
    app_protocol: str = ""
    target_port: PortNumber | str | None = None


class ServiceSpec(_K8s):
    type: str = "ClusterIP"
    ports: list[ServicePortSpec] = []
    external_name: str = ""
    cluster_ip: str = ""
    selector: dict[str, str] = {}


class K8sService(_K8s):
    metadata: ObjectMeta
    spec: ServiceSpec = msgspec.field(default_factory=ServiceSpec)


class EndpointConditions(_K8s):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class SliceEndpoint(_K8s):
    addresses: list[str]
    conditions: EndpointConditions = msgspec.field(default_factory=EndpointConditions)
    zone: str = ""
    hostname: str = ""


class SlicePort(_K8s):
    name: str = ""
    port: PortNumber | None = None
    protocol: str = "TCP"
    app_protocol: str = ""


class K8sEndpointSlice(_K8s):
    metadata: ObjectMeta
    address_type: str = "IPv4"
    endpoints: list[SliceEndpoint] = []
    ports: list[SlicePort] = []


class EndpointAddress(_K8s):
    ip: str
    hostname: str = ""


class EndpointPort(_K8s):
    port: PortNumber
    name: str = ""
    protocol: str = "TCP"


class EndpointSubset(_K8s):
    addresses: list[EndpointAddress] = []
    not_ready_addresses: list[EndpointAddress] = []
    ports: list[EndpointPort] = []


class K8sEndpoints(_K8s):
    metadata: ObjectMeta
    subsets: list[EndpointSubset] = []


class ServiceBackendPort(_K8s):
    number: int = 0
    name: str = ""


class IngressServiceBackend(_K8s):
    name: str
    port: ServiceBackendPort = msgspec.field(default_factory=ServiceBackendPort)


class IngressBackend(_K8s):
    service: IngressServiceBackend | None = None
    resource: dict[str, Any] | None = None


class HTTPIngressPath(_K8s):
    backend: IngressBackend
    path: str = ""
    path_type: str = "ImplementationSpecific"


class HTTPIngressRuleValue(_K8s):
    paths: list[HTTPIngressPath] = []


class IngressRule(_K8s):
    host: str = ""
    http: HTTPIngressRuleValue | None = None


class IngressTLS(_K8s):
    hosts: list[str] = []
    secret_name: str = ""


class IngressSpec(_K8s):
    ingress_class_name: str = ""
    default_backend: IngressBackend | None = None
    rules: list[IngressRule] = []
    tls: list[IngressTLS] = []


class K8sIngress(_K8s):
    metadata: ObjectMeta
    spec: IngressSpec = msgspec.field(default_factory=IngressSpec)


def decode_object(body: Any, kind: type[T]) -> T:
    """An event body, as folded (its msgpack: bytes, or a `msgspec.Raw`) or decoded (builtins), as a
    typed view; raises msgspec.ValidationError naming the field. From the bytes straight into the view:
    no dict is built. (No decoded body is bytes: a Kubernetes object is a map.)"""
    if isinstance(body, (bytes, msgspec.Raw)):
        return _decoder(kind).decode(body)
    return msgspec.convert(body, kind, strict=False)


# One lax decoder per typed view, made on first use.
_DECODERS: dict[Any, Any] = {}


def _decoder(kind: type[T]) -> msgspec.msgpack.Decoder[T]:
    decoder = _DECODERS.get(kind)
    if decoder is None:
        # Lax, as `msgspec.convert(strict=False)`: Kubernetes clients write "80" where an int is meant.
        decoder = _DECODERS[kind] = msgspec.msgpack.Decoder(kind, strict=False)
    return decoder
