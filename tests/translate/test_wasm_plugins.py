"""WasmPlugins in the translator: one ECDS resource per (plugin, rule slot), one filter per instance in
every connection manager in phase and priority order, and per-route entries that enable each rule
instance where Higress's SDKs would pick it (docs/wasm-plugins.md)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as wasm_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.wasm.v3 import wasm_pb2
from google.protobuf import wrappers_pb2

from tests.support.objects import endpoint_slice, service
from tests.translate.translator_harness import (
    HTTP_LISTENER,
    HTTP_ROUTES,
    HTTPS_LISTENER,
    Harness,
    ingress_body,
    tls_secret,
)
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import EXTENSION_CONFIG, LISTENER, ROUTE
from xdsbus.contract.wasm_modules import MODULES_CLUSTER, ModuleSource, module_uri, parse_module_uri
from xdsbus.ledger.dump import to_json

SHA = "a" * 64
OTHER_SHA = "b" * 64
NS = "higress-system"
WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"


def plugin(
    name: str,
    *,
    default: dict[str, Any] | None = None,
    rules: list[dict[str, Any]] | None = None,
    created: str = "2026-01-01T00:00:00Z",
    **spec: Any,
) -> dict[str, Any]:
    body_spec: dict[str, Any] = {"url": "oci://registry.example/plugins/p:1.0", "sha256": SHA, **spec}
    if default is not None:
        body_spec["defaultConfig"] = default
    if rules is not None:
        body_spec["matchRules"] = rules
    return {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": created},
        "spec": body_spec,
    }


@pytest.fixture
def h() -> Harness:
    harness = Harness()
    harness.put(
        service("web"),
        endpoint_slice("web", ["10.0.0.1"]),
        service("api"),
        endpoint_slice("api", ["10.0.0.2"]),
        ingress_body("shop", [("a.example.com", [("/", "web", 80)])]),
        ingress_body(
            "api", [("a.example.com", [("/api", "api", 80)]), ("b.example.com", [("/", "api", 80)])]
        ),
    )
    return harness


def filters(h: Harness, listener: str = HTTP_LISTENER) -> list[hcm.HttpFilter]:
    lst = h.get(LISTENER, listener, listener_pb2.Listener)
    manager = hcm.HttpConnectionManager()
    assert lst.filter_chains[0].filters[0].typed_config.Unpack(manager)
    return list(manager.http_filters)


def wasm_filters(h: Harness, listener: str = HTTP_LISTENER) -> list[tuple[str, bool]]:
    return [(f.name, f.disabled) for f in filters(h, listener) if f.HasField("config_discovery")]


def plugin_config(h: Harness, name: str) -> wasm_pb2.PluginConfig:
    resource = h.get(EXTENSION_CONFIG, name, extension_pb2.TypedExtensionConfig)
    assert resource.name == name
    wasm = wasm_filter_pb2.Wasm()
    assert resource.typed_config.Unpack(wasm)
    return wasm.config


def configuration(h: Harness, name: str) -> Any:
    value = wrappers_pb2.StringValue()
    assert plugin_config(h, name).configuration.Unpack(value)
    return json.loads(value.value)


def enabled(configs: Any) -> dict[str, bool]:
    """typed_per_filter_config's wasm entries: name -> enabled."""
    out = {}
    for name, packed in configs.items():
        if name.startswith("wasm/"):
            fc = rc.FilterConfig()
            assert packed.Unpack(fc)
            out[name] = not fc.disabled
            if not fc.disabled:
                assert fc.HasField("config") and not fc.config.type_url
    return out


def route_entries(h: Harness, host: str) -> dict[str, dict[str, bool]]:
    """Per route name, the wasm entries in force (the route's, else its virtual host's)."""
    vhost = h.vhost(host)
    base = enabled(vhost.typed_per_filter_config)
    return {r.name: enabled(r.typed_per_filter_config) or base for r in vhost.routes}


def test_a_plugin_with_a_default_config_runs_everywhere_through_ecds(h: Harness) -> None:
    h.put(plugin("headers", default={"value": "one"}, pluginName="add-header", failStrategy="FAIL_OPEN"))
    name = f"wasm/{NS}/headers/default"
    assert wasm_filters(h) == [(name, False)]
    assert [f.name for f in filters(h)][-1] == "envoy.filters.http.router"
    discovery = filters(h)[-2].config_discovery
    assert list(discovery.type_urls) == [WASM] and discovery.config_source.HasField("ads")
    config = plugin_config(h, name)
    assert config.name == name and config.root_id == "add-header"
    assert config.failure_policy == wasm_pb2.FAIL_OPEN
    remote = config.vm_config.code.remote
    assert config.vm_config.runtime == "envoy.wasm.runtime.v8"
    uri = module_uri(SHA, source="oci://registry.example/plugins/p:1.0", plugin=f"{NS}/headers")
    assert (remote.http_uri.uri, remote.http_uri.cluster, remote.sha256) == (uri, MODULES_CLUSTER, SHA)
    assert remote.http_uri.timeout.seconds == 10 and remote.retry_policy.num_retries.value > 0
    assert configuration(h, name) == {"value": "one"}
    # Enabled in the chain: no route needs an entry.
    assert all(not e for e in route_entries(h, "a.example.com").values())
    status = h.status("WasmPlugin", f"{NS}/headers")
    assert status is not None and status.state == Verdict.ACCEPTED
    h.assert_matches_full_build()


def test_fail_close_is_the_default(h: Harness) -> None:
    h.put(plugin("p", default={}))
    assert plugin_config(h, f"wasm/{NS}/p/default").failure_policy == wasm_pb2.FAIL_CLOSED


def test_phase_then_priority_orders_the_chain(h: Harness) -> None:
    h.put(
        plugin("stats", default={"a": 1}, phase="STATS", priority=100),
        plugin("plain", default={"a": 1}),
        plugin("authz-low", default={"a": 1}, phase="AUTHZ", priority=1),
        plugin("authz-high", default={"a": 1}, phase="AUTHZ", priority=50),
        plugin("authn", default={"a": 1}, phase="AUTHN"),
        plugin("authz-none", default={"a": 1}, phase="AUTHZ"),
        plugin("authz-tie-b", default={"a": 1}, phase="AUTHZ", priority=10),
        plugin("authz-tie-a", default={"a": 1}, phase="AUTHZ", priority=10, created="2026-01-02T00:00:00Z"),
    )
    names = [n.split("/")[2] for n, _ in wasm_filters(h)]
    # Higher priority first; no priority last; a tie goes to the oldest, then by name.
    assert names == [
        "authn",
        "authz-high",
        "authz-tie-b",
        "authz-tie-a",
        "authz-low",
        "authz-none",
        "stats",
        "plain",
    ]
    h.assert_matches_full_build()


def test_rules_are_instances_enabled_where_the_first_matching_rule_applies(h: Harness) -> None:
    h.put(
        plugin(
            "block",
            default={"who": "default"},
            rules=[
                {"ingress": ["default/api"], "config": {"who": "api-ingress"}},
                {"domain": ["a.example.com"], "config": {"who": "domain-a"}},
                {"service": ["web.default.svc.cluster.local:80"], "config": {"who": "web-service"}},
            ],
        )
    )
    base = f"wasm/{NS}/block"
    assert wasm_filters(h) == [
        (f"{base}/rule-0", True),
        (f"{base}/rule-1", True),
        (f"{base}/rule-2", True),
        (f"{base}/default", False),
    ]
    assert configuration(h, f"{base}/rule-0") == {"who": "api-ingress"}
    assert configuration(h, f"{base}/default") == {"who": "default"}
    a = route_entries(h, "a.example.com")
    api_route = next(n for n in a if n.startswith("ingress/default/api/"))
    shop_route = next(n for n in a if n.startswith("ingress/default/shop/"))
    # The Ingress rule comes first: it wins over the domain rule on the api route.
    assert a[api_route] == {f"{base}/rule-0": True, f"{base}/default": False}
    # The domain rule comes before the service rule.
    assert a[shop_route] == {f"{base}/rule-1": True, f"{base}/default": False}
    assert list(route_entries(h, "b.example.com").values()) == [
        {f"{base}/rule-0": True, f"{base}/default": False}
    ]
    # A virtual host whose routes all pick the same instance carries it once, on the virtual host.
    assert enabled(h.vhost("b.example.com").typed_per_filter_config) == {
        f"{base}/rule-0": True,
        f"{base}/default": False,
    }
    status = h.status("WasmPlugin", f"{NS}/block")
    assert status is not None and status.state == Verdict.ACCEPTED and status.warnings == []
    assert "4 filter instance(s)" in status.reason
    h.assert_matches_full_build()


def test_without_default_config_routes_no_rule_matches_run_no_instance(h: Harness) -> None:
    h.put(plugin("only-b", rules=[{"domain": ["b.example.com"], "config": {"x": 1}}]))
    base = f"wasm/{NS}/only-b"
    assert wasm_filters(h) == [(f"{base}/rule-0", True)]
    assert enabled(h.vhost("b.example.com").typed_per_filter_config) == {f"{base}/rule-0": True}
    assert all(not e for e in route_entries(h, "a.example.com").values())
    h.put(
        plugin("only-b", rules=[{"domain": ["b.example.com"], "config": {"x": 1}}], defaultConfigDisable=True)
    )
    assert wasm_filters(h) == [(f"{base}/rule-0", True)]


def test_a_rule_with_ingress_and_service_needs_both(h: Harness) -> None:
    # Higress's Go SDK: a route rule with services matches routes of the route that go to the service.
    h.put(
        plugin(
            "both",
            rules=[{"ingress": ["default/api"], "service": ["web.default.svc.cluster.local"], "config": {}}],
        )
    )
    assert all(not e for e in route_entries(h, "a.example.com").values())
    h.put(
        ingress_body("api", [("a.example.com", [("/api", "web", 80)]), ("b.example.com", [("/", "api", 80)])])
    )
    a = route_entries(h, "a.example.com")
    assert a[next(n for n in a if n.startswith("ingress/default/api/"))] == {f"wasm/{NS}/both/rule-0": True}
    assert all(not e for e in route_entries(h, "b.example.com").values())
    h.assert_matches_full_build()


def test_a_bare_ingress_name_is_one_in_the_plugins_namespace(h: Harness) -> None:
    # Higress names the routes of an Ingress in the system namespace by its bare name.
    h.put(ingress_body("console", [("c.example.com", [("/", "web", 80)])], namespace=NS))
    h.put(plugin("p", rules=[{"ingress": ["console"], "config": {}}]))
    assert enabled(h.vhost("c.example.com").typed_per_filter_config) == {f"wasm/{NS}/p/rule-0": True}
    status = h.status("WasmPlugin", f"{NS}/p")
    assert status is not None and status.warnings == []


def test_wildcard_domains_follow_higress_host_matching(h: Harness) -> None:
    h.put(plugin("w", rules=[{"domain": ["*.example.com"], "config": {}}, {"domain": ["b.*"], "config": {}}]))
    base = f"wasm/{NS}/w"
    assert enabled(h.vhost("a.example.com").typed_per_filter_config) == {f"{base}/rule-0": True}
    assert enabled(h.vhost("b.example.com").typed_per_filter_config) == {f"{base}/rule-0": True}


def test_a_config_change_touches_only_the_ecds_resource(h: Harness) -> None:
    rules = [{"domain": ["a.example.com"], "config": {"v": 1}}]
    h.put(plugin("p", default={"v": 0}, rules=rules))
    h.commit()
    h.put(plugin("p", default={"v": 10}, rules=[{"domain": ["a.example.com"], "config": {"v": 11}}]))
    changes = h.commit()
    assert sorted((k.type_url, k.name) for k, _ in changes.changed) == [
        (EXTENSION_CONFIG, f"wasm/{NS}/p/default"),
        (EXTENSION_CONFIG, f"wasm/{NS}/p/rule-0"),
    ]
    assert changes.removed == []
    # A module change too (a new digest): the listener names the instance, not the module.
    h.put(
        plugin(
            "p",
            default={"v": 10},
            rules=[{"domain": ["a.example.com"], "config": {"v": 11}}],
            sha256=OTHER_SHA,
        )
    )
    assert {k.type_url for k, _ in h.commit().changed} == {EXTENSION_CONFIG}
    # Adding a rule changes the chain and the routes.
    h.put(plugin("p", default={"v": 10}, rules=[*rules, {"domain": ["b.example.com"], "config": {}}]))
    assert {LISTENER, ROUTE, EXTENSION_CONFIG} <= {k.type_url for k, _ in h.commit().changed}
    h.assert_matches_full_build()


def test_removing_a_plugin_withdraws_its_filters_and_resources(h: Harness) -> None:
    h.put(plugin("p", default={"v": 0}, rules=[{"domain": ["a.example.com"], "config": {}}]))
    h.delete("WasmPlugin", f"{NS}/p")
    assert wasm_filters(h) == []
    assert h.names(EXTENSION_CONFIG) == set()
    assert all(not e for e in route_entries(h, "a.example.com").values())
    assert h.status("WasmPlugin", f"{NS}/p") is None
    h.assert_matches_full_build()


def test_https_listeners_carry_the_plugins(h: Harness) -> None:
    h.put(
        tls_secret("a-tls"),
        ingress_body("secure", [("s.example.com", [("/", "web", 80)])], tls=[(["s.example.com"], "a-tls")]),
    )
    h.put(plugin("p", default={}))
    assert wasm_filters(h, HTTPS_LISTENER) == [(f"wasm/{NS}/p/default", False)]
    h.put(plugin("p", rules=[{"domain": ["s.example.com"], "config": {}}]))
    assert wasm_filters(h, HTTPS_LISTENER) == [(f"wasm/{NS}/p/rule-0", True)]
    vhost = h.route_config("https.443.s.example.com").virtual_hosts[0]
    assert enabled(vhost.typed_per_filter_config) == {f"wasm/{NS}/p/rule-0": True}
    h.assert_matches_full_build()


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"phase": "LATE"}, "spec.phase 'LATE' is not one of"),
        ({"priority": 2**40}, "spec.priority 1099511627776 is out of the int32 range"),
        ({"url": "ftp://x/p.wasm"}, "scheme must be one of oci://, http://, https://, file://"),
        ({"url": ""}, "spec.url is empty"),
        ({"sha256": "123"}, "spec.sha256 '123' is not a hex sha256"),
        ({"sha256": ""}, "module digest not resolved (spec.sha256 is absent)"),
        ({"failStrategy": "MAYBE"}, "spec.failStrategy 'MAYBE' is not one of FAIL_CLOSE, FAIL_OPEN"),
        ({"matchRules": [{"config": {}}]}, "spec.matchRules[0] has no match condition"),
        (
            {"matchRules": [{"domain": ["a"], "ingress": ["b/c"]}]},
            "spec.matchRules[0] sets ingress and domain",
        ),
        ({"matchRules": [{"domain": ["a"], "service": ["s"]}]}, "spec.matchRules[0] sets domain and service"),
        ({"priority": "high"}, "Expected `int | null`, got `str` - at `$.spec.priority`"),
    ],
)
def test_a_plugin_that_cannot_apply_is_rejected_alone(h: Harness, spec: dict[str, Any], reason: str) -> None:
    h.put(plugin("good", default={}))
    body = plugin("bad", default={})
    body["spec"].update(spec)
    h.put(body)
    status = h.status("WasmPlugin", f"{NS}/bad")
    assert status is not None and status.state == Verdict.REJECTED, status
    assert status.reason.startswith(f"WasmPlugin {NS}/bad: ") and reason in status.reason, status.reason
    assert wasm_filters(h) == [(f"wasm/{NS}/good/default", False)]
    h.assert_matches_full_build()


def test_a_digest_resolved_by_the_watcher_is_used(h: Harness) -> None:
    body = plugin("p", default={}, sha256="")
    pinned = f"oci://registry.example/plugins/p@sha256:{SHA}"
    body["xdsbusModule"] = {"sha256": OTHER_SHA, "url": pinned}
    h.put(body)
    remote = plugin_config(h, f"wasm/{NS}/p/default").vm_config.code.remote
    assert remote.sha256 == OTHER_SHA
    assert parse_module_uri(remote.http_uri.uri) == ModuleSource(OTHER_SHA, pinned, f"{NS}/p")
    h.put({**body, "xdsbusModule": {"error": "registry.example: 401 Unauthorized"}})
    status = h.status("WasmPlugin", f"{NS}/p")
    assert status is not None and status.state == Verdict.REJECTED
    assert "module digest not resolved: registry.example: 401 Unauthorized" in status.reason
    assert h.names(EXTENSION_CONFIG) == set()


def test_rules_naming_nothing_served_are_warnings(h: Harness) -> None:
    h.put(
        plugin(
            "p",
            rules=[
                {"ingress": ["default/nope"], "config": {}},
                {"domain": ["c.example.com"], "config": {}},
                {"service": ["nope.default.svc.cluster.local"], "config": {}},
                {"domain": ["a.example.com"], "configDisable": True},
            ],
        )
    )
    status = h.status("WasmPlugin", f"{NS}/p")
    assert status is not None and status.state == Verdict.ACCEPTED
    assert status.warnings == [
        "spec.matchRules[3] is disabled (configDisable)",
        "rule-0: Ingress default/nope is not served",
        "rule-1: domain c.example.com matches no host an Ingress serves",
        "rule-2: service nope.default.svc.cluster.local is not known",
    ]
    # The Ingress arrives: the warning goes.
    h.put(ingress_body("nope", [("c.example.com", [("/", "web", 80)])]))
    status = h.status("WasmPlugin", f"{NS}/p")
    assert status is not None and status.warnings == [
        "spec.matchRules[3] is disabled (configDisable)",
        "rule-2: service nope.default.svc.cluster.local is not known",
    ]
    # So does the service's (endpoints alone change nothing the status reads).
    h.put(endpoint_slice("nope", ["10.0.0.9"]))
    h.put(service("nope"))
    status = h.status("WasmPlugin", f"{NS}/p")
    assert status is not None and status.warnings == ["spec.matchRules[3] is disabled (configDisable)"]
    h.assert_matches_full_build()


def test_plugin_config_in_istio_form_is_used_as_it_is(h: Harness) -> None:
    h.put(plugin("istio", pluginConfig={"a": 1, "_rules_": []}))
    assert configuration(h, f"wasm/{NS}/istio/default") == {"_rules_": [], "a": 1}
    status = h.status("WasmPlugin", f"{NS}/istio")
    assert status is not None and "spec.pluginConfig._rules_" in status.warnings[0]


def test_instance_names_are_stable_across_config_values(h: Harness) -> None:
    h.put(plugin("p", default={"v": 1}, rules=[{"domain": ["a.example.com"], "config": {"v": 2}}]))
    before = (h.body(LISTENER, HTTP_LISTENER), h.body(ROUTE, HTTP_ROUTES))
    h.put(plugin("p", default={"v": 3}, rules=[{"domain": ["a.example.com"], "config": {"v": 4, "w": [1]}}]))
    assert (h.body(LISTENER, HTTP_LISTENER), h.body(ROUTE, HTTP_ROUTES)) == before
    assert h.names(EXTENSION_CONFIG) == {f"wasm/{NS}/p/default", f"wasm/{NS}/p/rule-0"}


def test_dumps_show_the_plugin_resources_as_envoy_json(h: Harness) -> None:
    # xdsbus dump, xdsbus replay --dump and the edge's /debug/configz render every resource.
    h.put(plugin("p", default={"v": 1}, rules=[{"domain": ["a.example.com"], "config": {"v": 2}}]))
    ecds = h.body(EXTENSION_CONFIG, f"wasm/{NS}/p/rule-0")
    assert ecds is not None
    config = to_json(ecds)["typed_config"]["config"]  # type: ignore[index]
    assert config["configuration"] == {
        "@type": "type.googleapis.com/google.protobuf.StringValue",
        "value": '{"v":2}',
    }
    listener = h.body(LISTENER, HTTP_LISTENER)
    route = h.body(ROUTE, HTTP_ROUTES)
    assert listener is not None and route is not None
    assert f"wasm/{NS}/p/rule-0" in json.dumps(to_json(listener)) and f"wasm/{NS}/p/rule-0" in json.dumps(
        to_json(route)
    )
