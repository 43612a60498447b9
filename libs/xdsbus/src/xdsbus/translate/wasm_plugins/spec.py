"""The WasmPlugin object (`extensions.higress.io/v1alpha1`) as its event body carries it.

Only what translation reads is declared. Config values are kept as decoded JSON (any), since a plugin's
configuration schema is the module's own business.
"""

from __future__ import annotations

from typing import Any

import msgspec

from xdsbus.contract.wasm_modules import RESOLVED_MODULE_KEY
from xdsbus.model.k8s import ObjectMeta


class _Spec(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    pass


class MatchRuleSpec(_Spec):
    """One entry of `spec.matchRules`."""

    ingress: list[str] = []
    domain: list[str] = []
    service: list[str] = []
    config: dict[str, Any] | None = None
    config_disable: bool | None = None
    # Higress renames `ingress` entries for non-HTTP route types (gRPC), which stock Envoy cannot serve.
    route_type: str | int | None = None


class EnvVarSpec(_Spec):
    """One entry of `spec.vmConfig.env`."""

    name: str
    value: str = ""
    value_from: str | int | None = None


class VmConfigSpec(_Spec):
    """`spec.vmConfig`."""

    env: list[EnvVarSpec] = []


class WasmPluginSpec(_Spec):
    """`spec` of a WasmPlugin."""

    url: str = ""
    sha256: str = ""
    image_pull_policy: str | int | None = None
    image_pull_secret: str = ""
    verification_key: str = ""
    plugin_name: str = ""
    # Enum names as the CRD spells them (AUTHN, AUTHZ, STATS, UNSPECIFIED_PHASE), or their numbers.
    phase: str | int | None = None
    priority: int | None = None
    fail_strategy: str | int | None = None
    vm_config: VmConfigSpec | None = None
    # Istio's form: the whole configuration, used as it is (Higress then ignores the fields below).
    plugin_config: dict[str, Any] | None = None
    default_config: dict[str, Any] | None = None
    default_config_disable: bool | None = None
    match_rules: list[MatchRuleSpec] = []


class ResolvedModule(_Spec):
    """What the watcher recorded about the module its url serves (contract/wasm_modules.py): its digest,
    the source pinned to it (an OCI image by manifest digest), or why it could not be fetched."""

    sha256: str = ""
    url: str = ""
    error: str = ""


class WasmPluginObject(msgspec.Struct, kw_only=True):
    """A WasmPlugin event body."""

    metadata: ObjectMeta
    spec: WasmPluginSpec = msgspec.field(default_factory=WasmPluginSpec)
    resolved: ResolvedModule | None = msgspec.field(default=None, name=RESOLVED_MODULE_KEY)


def decode_plugin(body: Any) -> WasmPluginObject:
    """The typed view of a WasmPlugin body; raises msgspec.ValidationError naming the field."""
    return msgspec.convert(body, WasmPluginObject, strict=False)
