"""What the handlers that build routes (Ingress, Gateway API) are given, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.views import ServiceModels, TlsSecrets
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.route_table_choice import CurrentRouteTables
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.shared_resources import SharedResources
from xdsbus.translate.wasm_plugins.chain import PluginChain


@dataclass(frozen=True, slots=True)
class RouteInputs:
    """Where route handlers publish (`table`) and give verdicts (`status`), the views they look services
    up and use TLS secrets through, the derived clusters they share, the wasm plugins' chain their
    listeners and virtual hosts carry, and the form of the HTTP port's route table."""

    table: ResourceTable
    status: StatusBook
    settings: TranslatorSettings
    services: ServiceModels
    secrets: TlsSecrets
    derived: SharedResources
    plugins: PluginChain
    route_tables: CurrentRouteTables
