"""Settings that change what the translator emits; recorded in every ledger version so a replay
translates exactly as the builder did."""

from __future__ import annotations

from typing import Final, Literal

import msgspec

TRANSLATOR_VERSION = "xdsbus-translate/3"
# route_tables: chosen from the number of hosts (translate/route_table_choice.py).
AUTO: Final = "auto"


class TranslatorSettings(msgspec.Struct, frozen=True, kw_only=True):
    http_port: int = 80
    https_port: int = 443
    # The addresses clients reach the gateway at, reported in Gateway status (sorted, no duplicates).
    addresses: tuple[str, ...] = ()
    # The ingress class served (translate/ingress_class.py); "" serves every Ingress, as every version
    # recorded before the builder decided classes did (their watchers had filtered).
    ingress_class: str = ""
    # The Envoy build served (translate/dataplane.py): "envoy" (stock) or "higress" (Higress's build,
    # whose extra filters Http2Rpc needs).
    dataplane: str = "envoy"
    # How many route configurations the Ingress HTTP port's route table is split into, by a hash of the
    # host (docs/route-table-split.md); 0: one route configuration, `http.<port>`; "auto": one while the
    # port has few hosts, more as it has more (translate/route_table_choice.py).
    route_tables: int | Literal["auto"] = "auto"

    def describe(self) -> str:
        """The ledger's translator_version field: `xdsbus-translate/3 http=80 https=443`, with
        ` addresses=a,b` when the gateway has addresses, ` ingress_class=C` when one class is served and
        ` route_tables=N` or ` route_tables=auto` unless the HTTP route table is one table whatever the
        hosts (0, what every version recorded before the field existed meant)."""
        out = f"{TRANSLATOR_VERSION} http={self.http_port} https={self.https_port}"
        if self.addresses:
            out += f" addresses={','.join(self.addresses)}"
        if self.ingress_class:
            out += f" ingress_class={self.ingress_class}"
        if self.dataplane != "envoy":
            out += f" dataplane={self.dataplane}"
        if self.route_tables:
            out += f" route_tables={self.route_tables}"
        return out

    @classmethod
    def parse(cls, text: str) -> TranslatorSettings:
        """Settings from a translator_version field (defaults for anything missing)."""
        fields = dict(part.split("=", 1) for part in text.split()[1:] if "=" in part)
        return cls(
            http_port=int(fields.get("http", 80)),
            https_port=int(fields.get("https", 443)),
            addresses=tuple(a for a in fields.get("addresses", "").split(",") if a),
            ingress_class=fields.get("ingress_class", ""),
            dataplane=fields.get("dataplane", "envoy"),
            route_tables=_route_tables(fields.get("route_tables", "0")),
        )


def _route_tables(text: str) -> int | Literal["auto"]:
    return AUTO if text == AUTO else int(text)
