"""builder_full_build: the builder's full build at 10k Services × 10 endpoints + 10k Ingress routes.

value     the full build as the builder does it after a restore: `Translator().full_build(state)`, then
          `table.digest()` and `table.commit()`, from an already folded state (the fold is not timed).
          The HTTP route table is built as one table (`--route-tables 0`), as the baseline builds it: the
          builder's default (auto) would split 10k hosts (docs/route-table-split.md).
baseline  the same Envoy resources (every Cluster, ClusterLoadAssignment, the Listener and the
          RouteConfiguration with the same virtual hosts and routes) built and serialized into their
          `Any` bytes with the xds-protos (upb) classes alone, from plain lists of names and addresses:
          no translation logic, the fastest upb idiom (sub-messages filled in place). The run asserts that
          it produced the translator's bytes exactly, and the same digest.
params    serialize_only_s: SerializeToString alone of the pre-built baseline messages, and the ratio
          to it; upb_kwargs_s: the same build with nested keyword-argument constructors (reference only);
          CPU-time medians and minimums (the machine may be shared); sizes and byte counts.

Budget (docs/design.md §8): ratio <= 3, within 3× of upb. Timings are medians of BENCH_REPEAT rounds;
each round runs the baseline, the translator and the serialize-only pass back to back, so drift on a
shared machine affects all three alike.
"""

from __future__ import annotations

import gc
import hashlib
import time
from collections.abc import Callable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from bench import workload
from bench.results_io import env_int, median, write_result
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.translate.global_options.envoy_hcm import apply_to_connection_manager, apply_to_listener
from xdsbus.translate.global_options.envoy_upstream import set_upstream_options
from xdsbus.translate.global_options.model import DEFAULT_OPTIONS
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator

NAME = "builder_full_build"
BUDGET_RATIO = 3.0
PARAMS = {
    "BENCH_SERVICES": (10_000, "Services (one port, one EndpointSlice each)"),
    "BENCH_ENDPOINTS": (10, "ready endpoints per EndpointSlice"),
    "BENCH_INGRESSES": (10_000, "Ingresses (one host, one path each)"),
    "BENCH_REPEAT": (5, "timed rounds; medians are reported (minimums in params)"),
}

HTTP_PORT = 80
_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
# The HTTP filters every connection manager carries, in the translator's order, each with an empty
# (pass-through) config: (filter name, type URL of its config).
_HTTP_FILTERS = (
    ("envoy.filters.http.cors", "type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors"),
    ("envoy.filters.http.rbac", "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"),
    (
        "envoy.filters.http.custom_response",
        "type.googleapis.com/envoy.extensions.filters.http.custom_response.v3.CustomResponse",
    ),
    ("envoy.filters.http.router", "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"),
)

_LOCAL_RATE_LIMIT_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
_LOCAL_RATE_LIMIT_CONFIG = local_rate_limit_pb2.LocalRateLimit(
    stat_prefix="http_local_rate_limiter"
).SerializeToString()

Resources = list[tuple[str, str, bytes]]


class UpbInput:
    """What the resources are made of, as plain data: names, addresses, hosts. No model, no decoding."""

    def __init__(self, services: int, endpoints: int, ingresses: int) -> None:
        self.clusters = [workload.cluster(i) for i in range(services)]
        self.addresses = [workload.addresses(i, endpoints) for i in range(services)]
        # Virtual hosts in the translator's order (sorted by host): (host, route name, cluster).
        self.vhosts = sorted(
            (
                workload.ingress_host(i % services),
                f"ingress/{workload.NAMESPACE}/{workload.ingress_name(i)}/0",
                self.clusters[i % services],
            )
            for i in range(ingresses)
        )
        hosts = [h for h, _, _ in self.vhosts]
        if len(set(hosts)) != len(hosts):
            raise ValueError("the upb baseline assumes one Ingress per host (BENCH_INGRESSES <= services)")


def upb_messages(data: UpbInput) -> list[tuple[str, str, Message]]:
    """Every resource as a upb message, built the fast way (fill sub-messages in place)."""
    out: list[tuple[str, str, Message]] = []
    for name in data.clusters:
        c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
        c.connect_timeout.seconds = 10
        eds = c.eds_cluster_config.eds_config
        eds.ads.SetInParent()
        eds.resource_api_version = config_source_pb2.V3
        # Higress's default upstream options (higress-config absent): one packed Any shared by all.
        set_upstream_options(c, DEFAULT_OPTIONS.upstream, http2=False)
        out.append((CLUSTER, name, c))
    healthy = health_check_pb2.HEALTHY
    for name, addrs in zip(data.clusters, data.addresses, strict=True):
        cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        add = cla.endpoints.add().lb_endpoints.add
        for a in addrs:
            lb = add(health_status=healthy)
            socket_address = lb.endpoint.address.socket_address
            socket_address.address = a
            socket_address.port_value = workload.TARGET_PORT
        out.append((ENDPOINT, name, cla))
    out.append(_listener())
    route_name = f"http.{HTTP_PORT}"
    rc = route_pb2.RouteConfiguration(name=route_name, ignore_port_in_host_matching=True)
    add_vhost = rc.virtual_hosts.add
    for host, route, cluster in data.vhosts:
        vh = add_vhost(name=f"{host}:{HTTP_PORT}", domains=[host])
        r = vh.routes.add(name=route)
        r.match.path_separated_prefix = workload.INGRESS_PATH
        r.route.cluster = cluster
        # A zero timeout turns Envoy's 15 s default off, as the translator does for every route.
        r.route.timeout.SetInParent()
    out.append((ROUTE, route_name, rc))
    return out


def _listener() -> tuple[str, str, Message]:
    name = f"0.0.0.0_{HTTP_PORT}"
    manager = hcm.HttpConnectionManager(stat_prefix=name)
    manager.rds.route_config_name = f"http.{HTTP_PORT}"
    manager.rds.config_source.ads.SetInParent()
    manager.rds.config_source.resource_api_version = config_source_pb2.V3
    manager.use_remote_address.value = True
    for filter_name, type_url in _HTTP_FILTERS:
        if filter_name == "envoy.filters.http.router":
            # The local rate limit (route-limit-* annotations) sits before the router with its stat prefix.
            limiter = manager.http_filters.add(name="envoy.filters.http.local_ratelimit")
            limiter.typed_config.type_url = _LOCAL_RATE_LIMIT_TYPE
            limiter.typed_config.value = _LOCAL_RATE_LIMIT_CONFIG
        # An empty config serializes to no bytes: setting the type URL is the whole `Any`.
        manager.http_filters.add(name=filter_name).typed_config.type_url = type_url
    manager.upgrade_configs.add(upgrade_type="websocket")
    # Higress's defaults when higress-config is absent: gzip on, downstream limits (one listener: the
    # translator's own code builds them).
    apply_to_connection_manager(manager, DEFAULT_OPTIONS)
    listener = listener_pb2.Listener(name=name)
    listener.address.socket_address.address = "0.0.0.0"
    listener.address.socket_address.port_value = HTTP_PORT
    f = listener.filter_chains.add().filters.add(name="envoy.filters.network.http_connection_manager")
    f.typed_config.type_url = _HCM_TYPE
    f.typed_config.value = manager.SerializeToString(deterministic=True)
    apply_to_listener(listener, DEFAULT_OPTIONS)
    return LISTENER, name, listener


def upb_build(data: UpbInput) -> Resources:
    """The baseline: build every message and serialize it into its `Any` bytes, with upb alone."""
    out: Resources = []
    for type_url, name, message in upb_messages(data):
        value = message.SerializeToString(deterministic=True)
        out.append((type_url, name, any_pb2.Any(type_url=type_url, value=value).SerializeToString()))
    return out


def upb_build_kwargs(data: UpbInput) -> Resources:
    """For reference only: the same resources built with nested keyword-argument constructors, the
    common upb idiom (and the one the translator used before), about 3x slower than filling in place."""
    out: Resources = []
    eds = config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3)
    messages: list[tuple[str, str, Message]] = []
    for name in data.clusters:
        cluster = cluster_pb2.Cluster(
            name=name,
            type=cluster_pb2.Cluster.EDS,
            connect_timeout=duration_pb2.Duration(seconds=10),
            eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=eds),
        )
        set_upstream_options(cluster, DEFAULT_OPTIONS.upstream, http2=False)
        messages.append((CLUSTER, name, cluster))
    for name, addrs in zip(data.clusters, data.addresses, strict=True):
        lb_endpoints = [
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(
                    address=address_pb2.Address(
                        socket_address=address_pb2.SocketAddress(address=a, port_value=workload.TARGET_PORT)
                    )
                ),
                health_status=health_check_pb2.HEALTHY,
            )
            for a in addrs
        ]
        cla = endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb_endpoints)],
        )
        messages.append((ENDPOINT, name, cla))
    messages.append(_listener())
    route_name = f"http.{HTTP_PORT}"
    vhosts = [
        route_components_pb2.VirtualHost(
            name=f"{host}:{HTTP_PORT}",
            domains=[host],
            routes=[
                route_components_pb2.Route(
                    name=route,
                    match=route_components_pb2.RouteMatch(path_separated_prefix=workload.INGRESS_PATH),
                    route=route_components_pb2.RouteAction(cluster=cluster, timeout=duration_pb2.Duration()),
                )
            ],
        )
        for host, route, cluster in data.vhosts
    ]
    messages.append(
        (
            ROUTE,
            route_name,
            route_pb2.RouteConfiguration(
                name=route_name, virtual_hosts=vhosts, ignore_port_in_host_matching=True
            ),
        )
    )
    for type_url, name, message in messages:
        value = message.SerializeToString(deterministic=True)
        out.append((type_url, name, any_pb2.Any(type_url=type_url, value=value).SerializeToString()))
    return out


def serialize_only(messages: list[tuple[str, str, Message]]) -> int:
    """SerializeToString alone of pre-built messages; returns the bytes produced."""
    return sum(len(m.SerializeToString(deterministic=True)) for _, _, m in messages)


def digest_of(resources: Resources) -> str:
    """The two-level digest of docs/design.md §5 (`sha256-buckets4096-v1`), computed from its
    definition in docs/architecture.md independently of ResourceTable."""
    buckets: list[list[bytes]] = [[] for _ in range(4096)]
    for type_url, name, body in resources:
        bucket = int.from_bytes(hashlib.sha256(f"{type_url}\x00{name}".encode()).digest()[:2], "big") >> 4
        buckets[bucket].append(f"{type_url}\x00{name}\x00{hashlib.sha256(body).hexdigest()}\n".encode())
    return hashlib.sha256(b"".join(hashlib.sha256(b"".join(sorted(b))).digest() for b in buckets)).hexdigest()


def _timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall and CPU seconds of one call, from a collected heap (the previous round's garbage is gone)."""
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


def _check_same(translator: Translator, upb: Resources, upb_digest: str) -> None:
    table = {(k.type_url, k.name): r.body for k, r in translator.table.items()}
    theirs = {(t, n): b for t, n, b in upb}
    if table.keys() != theirs.keys():
        missing = sorted(theirs.keys() - table.keys())[:3]
        extra = sorted(table.keys() - theirs.keys())[:3]
        raise AssertionError(f"resource sets differ: upb-only {missing}, translator-only {extra}")
    for key, body in theirs.items():
        if table[key] != body:
            raise AssertionError(f"{key} differs: upb {body[:200]!r} translator {table[key][:200]!r}")
    if translator.table.digest() != upb_digest:
        raise AssertionError(
            "same bytes but different digest: ResourceTable.digest() disagrees with docs/design.md §5"
        )


def run() -> dict[str, Any]:
    services = env_int("BENCH_SERVICES", 10_000)
    endpoints = env_int("BENCH_ENDPOINTS", 10)
    ingresses = env_int("BENCH_INGRESSES", 10_000)
    repeat = max(1, env_int("BENCH_REPEAT", 5))

    t0 = time.perf_counter()
    state = workload.folded_state(services, endpoints, ingresses)
    fold_s = time.perf_counter() - t0
    data = UpbInput(services, endpoints, ingresses)
    prebuilt = upb_messages(data)

    def translate() -> tuple[Translator, str]:
        translator = Translator(TranslatorSettings(route_tables=0))
        translator.full_build(state)
        digest = translator.table.digest()
        translator.table.commit()
        return translator, digest

    walls: dict[str, list[float]] = {"translator": [], "upb": [], "serialize_only": []}
    cpus: dict[str, list[float]] = {"translator": [], "upb": [], "serialize_only": []}
    translator: Translator | None = None
    upb: Resources = []
    for round_ in range(repeat):
        # Alternate which goes first, so that neither always runs right after a collection of the other.
        for what in ("upb", "translator") if round_ % 2 == 0 else ("translator", "upb"):
            if what == "upb":
                upb = []
                wall, cpu, upb = _timed(lambda: upb_build(data))
            else:
                translator = None
                wall, cpu, (translator, _) = _timed(translate)
            walls[what].append(wall)
            cpus[what].append(cpu)
        wall, cpu, _ = _timed(lambda: serialize_only(prebuilt))
        walls["serialize_only"].append(wall)
        cpus["serialize_only"].append(cpu)

    assert translator is not None
    upb_digest = digest_of(upb)
    _check_same(translator, upb, upb_digest)
    kwargs_s, _, kwargs = _timed(lambda: upb_build_kwargs(data))
    if kwargs != upb:
        raise AssertionError("the keyword-argument upb build differs from the in-place one")
    del kwargs

    value = median(walls["translator"])
    baseline = median(walls["upb"])
    ser = median(walls["serialize_only"])
    by_type: dict[str, int] = {}
    for type_url, _, _ in upb:
        by_type[type_url.rsplit(".", 1)[-1]] = by_type.get(type_url.rsplit(".", 1)[-1], 0) + 1
    params = {
        "value_is": "median wall s of Translator().full_build(state) + table.digest() + table.commit()",
        "baseline_is": "median wall s of building and serializing the same resources to Any bytes with upb "
        "alone (bytes and digest asserted equal to the translator's)",
        "services": services,
        "endpoints_per_service": endpoints,
        "ingresses": ingresses,
        "repeat": repeat,
        "resources": len(upb),
        "resources_by_type": by_type,
        "bytes": sum(len(b) for _, _, b in upb),
        "route_config_bytes": next(len(b) for t, _, b in upb if t == ROUTE),
        "digest": upb_digest,
        "serialize_only_s": round(ser, 4),
        "upb_kwargs_s": round(kwargs_s, 4),
        "upb_kwargs_is": "one run of the same upb build with nested keyword-argument constructors, for "
        "reference (not the baseline)",
        "ratio_to_upb_kwargs": round(value / kwargs_s, 3),
        "ratio_to_serialize_only": round(value / ser, 3),
        "translator_cpu_s": round(median(cpus["translator"]), 4),
        "upb_cpu_s": round(median(cpus["upb"]), 4),
        "serialize_only_cpu_s": round(median(cpus["serialize_only"]), 4),
        "cpu_ratio": round(median(cpus["translator"]) / median(cpus["upb"]), 3),
        "min_s": round(min(walls["translator"]), 4),
        "baseline_min_s": round(min(walls["upb"]), 4),
        "min_ratio": round(min(walls["translator"]) / min(walls["upb"]), 3),
        "samples_s": {k: [round(x, 4) for x in v] for k, v in walls.items()},
        "fold_s_not_timed": round(fold_s, 3),
    }
    return write_result(
        NAME,
        value=round(value, 4),
        unit="s",
        baseline=round(baseline, 4),
        budget=BUDGET_RATIO,
        budget_on="ratio",
        # Each is asserted above (_check_same, the keyword-argument build): reaching here means it held.
        checks={"bytes_identical": True, "digest_equal": True, "upb_kwargs_bytes_identical": True},
        params=params,
    )
