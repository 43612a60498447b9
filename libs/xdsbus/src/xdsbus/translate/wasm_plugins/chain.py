"""The plugins' place in every connection manager and on every route.

The chain holds one filter per instance, plugins in phase then priority order, a plugin's rule instances
before its default one. A rule instance is disabled in the chain and enabled on the routes it applies to;
the default instance runs everywhere but where one of its plugin's rules applies. Higress's SDKs pick the
first rule that matches a request, so a route is given the first rule matching its Ingress, its domain or
its services (docs/wasm-plugins.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from xdsbus.model.routes import Route
from xdsbus.translate.wasm_plugins.envoy_wasm import DISABLE, ENABLE, filter_name, http_filter
from xdsbus.translate.wasm_plugins.plan import Instance, PluginPlan, RuleMatch

INGRESS_KIND = "Ingress"

# What a route needs of the plugins: per filter name, enabled (True) or disabled (False).
Entries = tuple[tuple[str, bool], ...]


def domain_matches(pattern: str, host: str) -> bool:
    """Higress's host match: `*suffix`, `prefix*` or the exact name; `host` is a virtual host's domain."""
    if pattern.startswith("*"):
        return host.endswith(pattern[1:])
    if pattern.endswith("*"):
        return host.startswith(pattern[:-1])
    return host == pattern


def service_matches(pattern: str, route: Route) -> bool:
    """Whether one of the route's destinations is the service `host` or `host:port`. Higress matches the
    cluster a request goes to; a route splitting traffic between services is matched as a whole."""
    host, _, port = pattern.rpartition(":") if ":" in pattern else (pattern, "", "")
    return any(d.hostname == host and (not port or str(d.port) == port) for d in route.destinations)


def rule_matches(match: RuleMatch, host: str, route: Route) -> bool:
    """Whether a rule applies to `route` of the virtual host `host`."""
    if match.ingresses:
        if route.origin.kind != INGRESS_KIND or route.origin.key not in match.ingresses:
            return False
        return not match.services or any(service_matches(s, route) for s in match.services)
    if match.domains:
        return any(domain_matches(d, host) for d in match.domains)
    return any(service_matches(s, route) for s in match.services)


class _Routed:
    """A plugin with rules: its rule filters with their matches, and its default filter's name."""

    __slots__ = ("default", "rules")

    def __init__(self, plan: PluginPlan) -> None:
        self.rules = tuple((filter_name(plan, i), i.match) for i in plan.instances if i.match is not None)
        default = plan.default
        self.default = filter_name(plan, default) if default is not None else None

    def entries(self, host: str, route: Route) -> Entries:
        for name, match in self.rules:
            if rule_matches(match, host, route):
                return ((name, True),) if self.default is None else ((name, True), (self.default, False))
        return ()


class PluginChain:
    """The plugins in chain order, the connection managers' filters, and the per-route entries."""

    def __init__(self) -> None:
        self._plans: dict[tuple[str, str], PluginPlan] = {}
        self._filters: tuple[hcm.HttpFilter, ...] = ()
        self._filter_key: tuple[tuple[str, bool], ...] = ()
        self._routed: tuple[_Routed, ...] = ()
        self._routing_key: tuple[object, ...] = ()

    def set(self, key: tuple[str, str], plan: PluginPlan | None) -> tuple[bool, bool]:
        """Add, replace (plan) or drop (None) the plugin `key` (namespace, name); returns whether the
        connection managers' filters changed and whether what routes need changed."""
        if plan is None:
            self._plans.pop(key, None)
        else:
            self._plans[key] = plan
        ordered = sorted(self._plans.values(), key=PluginPlan.order_key)
        filter_key = tuple(
            (filter_name(plan, i), i.match is not None) for plan in ordered for i in _chain_order(plan)
        )
        routing_key = tuple(
            (filter_name(plan, i), i.match) for plan in ordered for i in plan.instances if plan.rules
        )
        filters_changed = filter_key != self._filter_key
        routing_changed = routing_key != self._routing_key
        if filters_changed:
            self._filter_key = filter_key
            self._filters = tuple(http_filter(name, disabled) for name, disabled in filter_key)
        if routing_changed:
            self._routing_key = routing_key
            self._routed = tuple(_Routed(plan) for plan in ordered if plan.rules)
        return filters_changed, routing_changed

    def plans(self) -> list[PluginPlan]:
        """Every plugin's plan, in chain order."""
        return sorted(self._plans.values(), key=PluginPlan.order_key)

    def http_filters(self) -> tuple[hcm.HttpFilter, ...]:
        """The instances' filters, in the order the connection managers run them."""
        return self._filters

    def entries(self, host: str, route: Route) -> Entries:
        """What `route` of the virtual host `host` needs: the rule filters it enables and the default
        filters it disables."""
        return tuple(entry for routed in self._routed for entry in routed.entries(host, route))

    def apply(self, vhost: rc.VirtualHost, host: str, routes: Sequence[Route]) -> None:
        """Enable and disable the instances on `vhost`, built from `routes` (its last routes; any before
        them are internal ones): on the virtual host when every route needs the same, else per route."""
        if not self._routed or not routes:
            return
        needs = [self.entries(host, route) for route in routes]
        if all(need == needs[0] for need in needs):
            _put(vhost.typed_per_filter_config, needs[0])
            return
        offset = len(vhost.routes) - len(routes)
        for index, need in enumerate(needs):
            _put(vhost.routes[offset + index].typed_per_filter_config, need)


def _chain_order(plan: PluginPlan) -> list[Instance]:
    """A plugin's instances in the chain: rules first, then the default. Only one of them runs for a
    request, so their order among themselves does not change behaviour; it is fixed for stable bytes."""
    return [*plan.rules, *([plan.default] if plan.default is not None else [])]


def _put(configs: object, entries: Entries) -> None:
    for name, enabled in entries:
        configs[name].CopyFrom(ENABLE if enabled else DISABLE)  # type: ignore[index]
