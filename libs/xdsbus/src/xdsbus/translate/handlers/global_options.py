"""ConfigMaps: `higress-system/higress-config` sets the global options (docs/global-options.md) and
`higress-system/higress-https` the fallback certificates; every other ConfigMap is reported as ignored.

Of several sources holding one of these ConfigMaps, the first by name is used, as for McpBridge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.mcpbridge_registries import winning_source
from xdsbus.translate.envoy_tracing_cluster import build_collector_cluster
from xdsbus.translate.global_options.https import HttpsConfig, parse_https_config_map
from xdsbus.translate.global_options.model import CurrentOptions, GlobalOptions
from xdsbus.translate.global_options.parse import parse_config_map
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.handlers.views import ServiceModels
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.resource_table import ResourceTable


class _Parsed(Protocol):
    """What parsing one of Higress's ConfigMaps gives: problems with some keys, or an error with all."""

    @property
    def problems(self) -> tuple[str, ...]: ...

    @property
    def error(self) -> str: ...


_P = TypeVar("_P", bound=_Parsed)

CONFIG_MAP = "ConfigMap"
HIGRESS_CONFIG_KEY = "higress-system/higress-config"
HIGRESS_HTTPS_KEY = "higress-system/higress-https"

_NOTHING = Touched()


class GlobalOptionsHandler:
    """Folds ConfigMaps into the options in force and the fallback certificates; publishes the tracing
    collector's cluster."""

    kinds = (CONFIG_MAP,)

    def __init__(
        self, table: ResourceTable, status: StatusBook, services: ServiceModels, options: CurrentOptions
    ) -> None:
        self._table = table
        self._status = status
        self._services = services
        self.options = options
        self._options_changed = False
        self._https_changed = False
        self._collector: str | None = None
        # Per ConfigMap key, the refs given a status, so that a holder gone can be cleared.
        self._holders: dict[str, set[ObjectRef]] = {}

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read a ConfigMap: the two Higress reads are parsed, any other one is reported ignored."""
        if ref.key == HIGRESS_CONFIG_KEY:
            self._fold_config(state)
        elif ref.key == HIGRESS_HTTPS_KEY:
            self._fold_https(state)
        elif state.get(ref) is None:
            self._status.clear(ref)
        else:
            # Not an error: applications keep their own ConfigMaps beside the gateway's.
            self._status.set(
                ref,
                Verdict.IGNORED,
                f"ConfigMap {ref.key}: ignored, only {HIGRESS_CONFIG_KEY} and {HIGRESS_HTTPS_KEY} are read",
            )
        return _NOTHING

    def take_options_changed(self) -> bool:
        """Whether the options in force changed since the last call."""
        changed, self._options_changed = self._options_changed, False
        return changed

    def take_https_changed(self) -> bool:
        """Whether the fallback certificates changed since the last call."""
        changed, self._https_changed = self._https_changed, False
        return changed

    @property
    def collector_host(self) -> str | None:
        """The service hostname spans are sent to, when tracing is on."""
        provider = self.options.value.tracing.provider
        return provider.service if provider is not None and self.options.value.tracing.active else None

    def regenerate_collector(self) -> None:
        """Publish the tracing collector's cluster (or withdraw it when tracing is off)."""
        tracing = self.options.value.tracing
        name = None
        if tracing.active and tracing.provider is not None:
            provider = tracing.provider
            name = provider.cluster_name
            cluster = build_collector_cluster(
                provider, self._services.model(provider.service), self.options.value.upstream
            )
            self._table.put(CLUSTER, name, cluster.SerializeToString(deterministic=True))
        if self._collector is not None and self._collector != name:
            self._table.remove(CLUSTER, self._collector)
        self._collector = name

    def _winner(self, state: FoldState, key: str) -> ObjectRef | None:
        """The holder of `key` used, the others told so."""
        holders = sorted(s for s, objects in state.objects.get(CONFIG_MAP, {}).items() if key in objects)
        winner = winning_source(holders)
        for source in holders:
            if source != winner:
                self._status.set(
                    ObjectRef(CONFIG_MAP, source, key),
                    Verdict.REJECTED,
                    f"ConfigMap {key}: source {winner} also has one and is used (first by name)",
                )
        return ObjectRef(CONFIG_MAP, winner, key) if winner is not None else None

    def _fold_config(self, state: FoldState) -> None:
        parsed = self._read(state, HIGRESS_CONFIG_KEY, parse_config_map, "; the defaults apply")
        options = parsed.options if parsed is not None else GlobalOptions()
        if options != self.options.value:
            self.options.value = options
            self._options_changed = True

    def _fold_https(self, state: FoldState) -> None:
        parsed = self._read(state, HIGRESS_HTTPS_KEY, parse_https_config_map, "")
        https = parsed if parsed is not None else HttpsConfig()
        if https != self.options.https:
            self.options.https = https
            self._https_changed = True

    def _read(self, state: FoldState, key: str, parse: Callable[[Any], _P], unreadable: str) -> _P | None:
        """The ConfigMap `key` of its winning source, parsed by `parse`, with its verdict set: its
        problems are warnings, an error rejects it. None when no source holds it or `parse` failed
        (the reason, ending with `unreadable`, rejects it)."""
        parsed = None
        ref = self._winner(state, key)
        if ref is not None:
            stored = state.get(ref)
            assert stored is not None
            where = f"ConfigMap {key}"
            try:
                parsed = parse(stored.value())
            except Exception as exc:
                self._status.set(ref, Verdict.REJECTED, f"{where}: {rejection_reason(exc)}{unreadable}")
            else:
                warnings = [f"{where}: {p}" for p in parsed.problems]
                if parsed.error:
                    self._status.set(ref, Verdict.REJECTED, f"{where}: {parsed.error}", warnings)
                else:
                    self._status.set(ref, Verdict.ACCEPTED, warnings=warnings)
        self._clear_removed(state, key)
        return parsed

    def _clear_removed(self, state: FoldState, key: str) -> None:
        """Drop the status of every source that no longer holds `key`."""
        holders = {
            ObjectRef(CONFIG_MAP, s, key)
            for s, objects in state.objects.get(CONFIG_MAP, {}).items()
            if key in objects
        }
        for ref in sorted(self._holders.get(key, set()) - holders):
            self._status.clear(ref)
        self._holders[key] = holders
