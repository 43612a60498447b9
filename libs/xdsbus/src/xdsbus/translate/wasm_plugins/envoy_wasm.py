"""Envoy messages of the wasm filter instances: the ECDS resource of each, its entry in a connection
manager's chain, and the per-route entries that enable or disable it (docs/design.md §6)."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2, extension_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as wasm_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.wasm.v3 import wasm_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from xdsbus.contract.wasm_modules import FETCH_TIMEOUT_SECONDS, MODULES_CLUSTER, module_uri
from xdsbus.translate.envoy_common import ads_source, pack
from xdsbus.translate.wasm_plugins.plan import Instance, PluginPlan

WASM_FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
_RUNTIME = "envoy.wasm.runtime.v8"
# Envoy retries a module fetch that failed (the edge may still be pulling it from its registry).
_FETCH_RETRIES = 5


def filter_name(plan: PluginPlan, instance: Instance) -> str:
    """The name of an instance's filter and of its ECDS resource: by plugin and rule slot, never by
    configuration, so a new configuration value changes the resource alone."""
    return f"wasm/{plan.namespace}/{plan.name}/{instance.slot}"


def _module(plan: PluginPlan) -> base_pb2.AsyncDataSource:
    # The edge fetches the module from the source the URI names (contract/wasm_modules.py); Envoy checks
    # the bytes it gets against the sha256.
    uri = module_uri(plan.sha256, source=plan.source, plugin=f"{plan.namespace}/{plan.name}")
    return base_pb2.AsyncDataSource(
        remote=base_pb2.RemoteDataSource(
            http_uri=http_uri_pb2.HttpUri(
                uri=uri,
                cluster=MODULES_CLUSTER,
                timeout=duration_pb2.Duration(seconds=FETCH_TIMEOUT_SECONDS),
            ),
            sha256=plan.sha256,
            retry_policy=base_pb2.RetryPolicy(num_retries=wrappers_pb2.UInt32Value(value=_FETCH_RETRIES)),
        )
    )


def extension_config(plan: PluginPlan, instance: Instance) -> bytes:
    """The serialized ECDS resource (TypedExtensionConfig) of one instance."""
    name = filter_name(plan, instance)
    plugin = wasm_pb2.PluginConfig(
        name=name,
        root_id=plan.root_id,
        vm_config=wasm_pb2.VmConfig(runtime=_RUNTIME, code=_module(plan)),
        configuration=pack(wrappers_pb2.StringValue(value=instance.configuration)),
        failure_policy=wasm_pb2.FAIL_OPEN if plan.fail_open else wasm_pb2.FAIL_CLOSED,
    )
    resource = extension_pb2.TypedExtensionConfig(
        name=name, typed_config=pack(wasm_filter_pb2.Wasm(config=plugin))
    )
    return resource.SerializeToString(deterministic=True)


def http_filter(name: str, disabled: bool) -> hcm.HttpFilter:
    """A connection manager's entry for an instance: its configuration comes through ECDS on the ADS
    stream, and the listener waits for it before it serves."""
    return hcm.HttpFilter(
        name=name,
        config_discovery=config_source_pb2.ExtensionConfigSource(
            config_source=ads_source(), type_urls=[WASM_FILTER_TYPE]
        ),
        disabled=disabled,
    )


def _filter_config(disabled: bool) -> any_pb2.Any:
    config = rc.FilterConfig(disabled=disabled)
    if not disabled:
        # A present but empty `config` enables a filter the chain has disabled; a FilterConfig without
        # one is refused.
        config.config.SetInParent()
    return pack(config)


ENABLE = _filter_config(False)
DISABLE = _filter_config(True)
