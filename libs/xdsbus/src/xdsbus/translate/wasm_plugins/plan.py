"""A WasmPlugin's plan: its module, its place in the filter chain, and its filter instances, each with the
configuration it runs with and where it applies (docs/wasm-plugins.md).

Higress turns `defaultConfig` and `matchRules` into one configuration with a `_rules_` list that its SDKs
match per request on the route name, the host and the cluster name (docs/higress.md, WasmPlugin). Stock
Envoy no longer gives a module the route and cluster names, so each rule becomes a filter instance of its
own, enabled by Envoy on the routes it matches, and `defaultConfig` the instance that runs elsewhere.
"""

from __future__ import annotations

import enum
import json
from typing import Any
from urllib.parse import urlsplit

import msgspec

from xdsbus.contract.wasm_modules import is_sha256
from xdsbus.translate.wasm_plugins.spec import (
    MatchRuleSpec,
    ResolvedModule,
    WasmPluginObject,
    WasmPluginSpec,
)

DEFAULT_SLOT = "default"
URL_SCHEMES = ("oci", "http", "https", "file")
_INT32 = (-(2**31), 2**31 - 1)


class PluginError(Exception):
    """A WasmPlugin that cannot be applied; the message is its status reason."""


class Phase(enum.IntEnum):
    """Where a plugin runs, in the order the chain runs them."""

    AUTHN = 0
    AUTHZ = 1
    STATS = 2
    UNSPECIFIED = 3


# The CRD's enum names and numbers (Higress's wasmplugin.proto: UNSPECIFIED_PHASE 0, AUTHN 1, AUTHZ 2,
# STATS 3).
_PHASES: dict[str | int, Phase] = {
    "UNSPECIFIED_PHASE": Phase.UNSPECIFIED,
    "AUTHN": Phase.AUTHN,
    "AUTHZ": Phase.AUTHZ,
    "STATS": Phase.STATS,
    0: Phase.UNSPECIFIED,
    1: Phase.AUTHN,
    2: Phase.AUTHZ,
    3: Phase.STATS,
}
_FAIL_OPEN: dict[str | int, bool] = {"FAIL_CLOSE": False, "FAIL_OPEN": True, 0: False, 1: True}


class RuleMatch(msgspec.Struct, frozen=True):
    """Where one rule applies: routes of these Ingresses (`namespace/name`), these domains (exact,
    `*suffix` or `prefix*`), or routes to these services (`host` or `host:port`). One kind per rule, but
    Ingresses and services together: routes of those Ingresses to those services."""

    ingresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    services: tuple[str, ...] = ()


class Instance(msgspec.Struct, frozen=True):
    """One filter instance of a plugin: its slot (`default` or `rule-<index in matchRules>`), the JSON
    configuration it runs with, and, for a rule, where it applies (None: wherever no rule does)."""

    slot: str
    configuration: str
    match: RuleMatch | None = None


class PluginPlan(msgspec.Struct, frozen=True):
    """Everything the chain and the ECDS resources need of one plugin."""

    namespace: str
    name: str
    created: str
    phase: Phase
    # None sorts after every number, as Istio orders a plugin without priority.
    priority: int | None
    root_id: str
    sha256: str
    # Where the edge fetches the module from: spec.url, or the source the watcher pinned.
    source: str
    fail_open: bool
    instances: tuple[Instance, ...]
    warnings: tuple[str, ...] = ()

    def order_key(self) -> tuple[int, int, int, str, str, str]:
        """Phase, then priority (higher first, none last), then the oldest, then namespace/name."""
        missing = 1 if self.priority is None else 0
        return (self.phase, missing, -(self.priority or 0), self.created, self.namespace, self.name)

    @property
    def rules(self) -> tuple[Instance, ...]:
        """The rule instances, in matchRules order (the first that matches a request wins)."""
        return tuple(i for i in self.instances if i.match is not None)

    @property
    def default(self) -> Instance | None:
        """The instance that runs where no rule applies, if the plugin has one."""
        return next((i for i in self.instances if i.match is None), None)


def _json(config: dict[str, Any]) -> str:
    # Sorted keys: the same configuration always gives the same ECDS bytes.
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _phase(spec: WasmPluginSpec) -> Phase:
    if spec.phase is None or spec.phase == "":
        return Phase.UNSPECIFIED
    key = spec.phase.upper() if isinstance(spec.phase, str) else spec.phase
    phase = _PHASES.get(key)
    if phase is None:
        raise PluginError(f"spec.phase {spec.phase!r} is not one of UNSPECIFIED_PHASE, AUTHN, AUTHZ, STATS")
    return phase


def _priority(spec: WasmPluginSpec) -> int | None:
    if spec.priority is not None and not _INT32[0] <= spec.priority <= _INT32[1]:
        raise PluginError(f"spec.priority {spec.priority} is out of the int32 range")
    return spec.priority


def _fail_open(spec: WasmPluginSpec) -> bool:
    if spec.fail_strategy is None or spec.fail_strategy == "":
        return False
    key = spec.fail_strategy.upper() if isinstance(spec.fail_strategy, str) else spec.fail_strategy
    if key not in _FAIL_OPEN:
        raise PluginError(f"spec.failStrategy {spec.fail_strategy!r} is not one of FAIL_CLOSE, FAIL_OPEN")
    return _FAIL_OPEN[key]


def _module(plugin: WasmPluginObject, fail_open: bool, warnings: list[str]) -> tuple[str, str]:
    """The module's sha256 and the source to fetch it from."""
    spec = plugin.spec
    scheme = urlsplit(spec.url).scheme.lower() if spec.url else ""
    if not spec.url:
        raise PluginError("spec.url is empty")
    if scheme not in URL_SCHEMES:
        raise PluginError(f"spec.url {spec.url!r}: scheme must be one of oci://, http://, https://, file://")
    if spec.sha256:
        digest = spec.sha256.lower()
        if not is_sha256(digest):
            raise PluginError(f"spec.sha256 {spec.sha256!r} is not a hex sha256")
        warnings.extend(_module_warnings(plugin.resolved, digest, spec.url, fail_open))
        return digest, spec.url
    resolved = plugin.resolved
    if resolved is not None and is_sha256(resolved.sha256):
        return resolved.sha256, resolved.url or spec.url
    why = f": {resolved.error}" if resolved is not None and resolved.error else ""
    raise PluginError(f"module digest not resolved{why} (spec.sha256 is absent)")


def _module_warnings(resolved: ResolvedModule | None, digest: str, url: str, fail_open: bool) -> list[str]:
    """What the watcher saw at the url of a plugin naming its sha256 (docs/wasm-modules.md): the edge,
    which serves modules, writes no status, so a module that does not match or cannot be fetched is
    reported here; the filter stays, and Envoy applies failStrategy."""
    then = (
        "failStrategy FAIL_OPEN: requests pass without the plugin"
        if fail_open
        else "failStrategy FAIL_CLOSE: requests get 503"
    )
    if resolved is None:
        return []
    if resolved.error:
        return [f"module not fetched by the watcher: {resolved.error}; if Envoy cannot load it, {then}"]
    if resolved.sha256 and resolved.sha256 != digest:
        return [
            f"module at {url} has sha256 {resolved.sha256}, not spec.sha256 {digest}: the edge does not serve"
            f" it ({then})"
        ]
    return []


def _rule_match(index: int, rule: MatchRuleSpec, namespace: str) -> RuleMatch:
    match = RuleMatch(
        # Higress names the routes of an Ingress in its own (the system) namespace by the bare name
        # (GenerateUniqueRouteName), so `_match_route_: [name]` finds them: a bare name is one there.
        ingresses=tuple(v if "/" in v else f"{namespace}/{v}" for v in rule.ingress if v),
        domains=tuple(v for v in rule.domain if v),
        services=tuple(v for v in rule.service if v),
    )
    kinds = [
        k
        for k, v in (("ingress", match.ingresses), ("domain", match.domains), ("service", match.services))
        if v
    ]
    if not kinds:
        raise PluginError(f"spec.matchRules[{index}] has no match condition (ingress, domain or service)")
    if len(kinds) > 1 and kinds != ["ingress", "service"]:
        # Higress's Go SDK reads a route rule with services as "route and service", and ignores the
        # domain of a rule that has a route or service; its Rust SDK refuses any two. Either way the
        # rule does not say what it seems to: it is refused here.
        raise PluginError(
            f"spec.matchRules[{index}] sets {' and '.join(kinds)}: a rule matches on one of them "
            "(or on ingress and service together)"
        )
    return match


def _instances(spec: WasmPluginSpec, namespace: str, warnings: list[str]) -> tuple[Instance, ...]:
    if spec.plugin_config is not None:
        if "_rules_" in spec.plugin_config:
            warnings.append(
                "spec.pluginConfig._rules_ is passed to the module as it is: its route and service rules "
                "never match on stock Envoy (use spec.matchRules)"
            )
        return (Instance(DEFAULT_SLOT, _json(spec.plugin_config)),)
    rules: list[Instance] = []
    for index, rule in enumerate(spec.match_rules):
        match = _rule_match(index, rule, namespace)
        if rule.config_disable:
            warnings.append(f"spec.matchRules[{index}] is disabled (configDisable)")
            continue
        if rule.route_type not in (None, "", "HTTP", 0):
            warnings.append(f"spec.matchRules[{index}]: routeType {rule.route_type} routes are not served")
            continue
        rules.append(Instance(f"rule-{index}", _json(rule.config or {}), match))
    out: list[Instance] = []
    default = spec.default_config or {}
    # As Higress's SDKs read the merged configuration: without `_rules_`, an empty one still runs the
    # plugin everywhere; with rules, only keys besides `_rules_` make a global configuration.
    if not spec.default_config_disable and (default or not rules):
        out.append(Instance(DEFAULT_SLOT, _json(default)))
    return (*rules, *out)


def plan_plugin(plugin: WasmPluginObject) -> PluginPlan:
    """The plan of one WasmPlugin; raises PluginError with the reason it cannot be applied."""
    spec = plugin.spec
    warnings: list[str] = []
    phase = _phase(spec)
    priority = _priority(spec)
    fail_open = _fail_open(spec)
    sha256, source = _module(plugin, fail_open, warnings)
    instances = _instances(spec, plugin.metadata.namespace, warnings)
    if spec.vm_config is not None and spec.vm_config.env:
        warnings.append("spec.vmConfig.env is not passed to the module")
    if spec.verification_key:
        warnings.append("spec.verificationKey is not checked")
    meta = plugin.metadata
    return PluginPlan(
        namespace=meta.namespace,
        name=meta.name,
        created=meta.creation_timestamp,
        phase=phase,
        priority=priority,
        root_id=spec.plugin_name,
        sha256=sha256,
        source=source,
        fail_open=fail_open,
        instances=instances,
        warnings=tuple(warnings),
    )
