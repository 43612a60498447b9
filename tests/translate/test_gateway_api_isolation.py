"""Listener isolation on a shared port, and 421 for requests whose host belongs to another HTTPS
listener than the one the TLS server name chose (translate/gateway_api/isolation.py); the gateway's
addresses in Gateway status and Gateways asking for other addresses (gateways.py)."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from tests.translate.gateway_api_objects import (
    NS,
    GatewayHarness,
    cluster_of,
    cond,
    gateway,
    gateway_class,
    http_route,
    listener,
    rule,
    service,
    svc_cluster,
)
from tests.translate.translator_harness import A_CERT, tls_secret
from xdsbus.translate.gateway_api.hostnames import covers
from xdsbus.translate.gateway_api.isolation import PortListeners
from xdsbus.translate.settings import TranslatorSettings

CERTS = [{"kind": "Secret", "group": "", "name": "cert"}]


def _domains(h: GatewayHarness, config: str = "http.80") -> dict[str, list[str]]:
    """Each virtual host's domain → its routes' prefixes (or `421` for a misdirected answer)."""
    out: dict[str, list[str]] = {}
    for vhost in h.route_config(config).virtual_hosts:
        out[vhost.domains[0]] = [
            "421" if r.direct_response.status == 421 else r.match.path_separated_prefix or r.match.prefix
            for r in vhost.routes
        ]
    return out


def _chains(h: GatewayHarness) -> dict[str, str]:
    """The HTTPS listener's filter chains: server name ("" for the chain without) → RDS name."""
    out: dict[str, str] = {}
    for chain in h.https_listener().filter_chains:
        manager = hcm.HttpConnectionManager()
        assert chain.filters[0].typed_config.Unpack(manager)
        for name in chain.filter_chain_match.server_names or [""]:
            out[name] = manager.rds.route_config_name
    return out


def _attached(name: str, section: str, path: str, hostnames: list[str] | None = None) -> dict[str, Any]:
    return http_route(
        name,
        [rule(path=("PathPrefix", path))],
        parents=[{"name": "gw", "namespace": NS, "sectionName": section}],
        hostnames=hostnames,
    )


def test_covers_and_shadows() -> None:
    assert covers("", "a.example.com") and covers("*.example.com", "*.foo.example.com")
    assert covers("*.example.com", "a.example.com") and not covers("*.example.com", "example.com")
    assert not covers("a.example.com", "*.example.com")
    port = PortListeners(("", "*.example.com", "abc.example.com"))
    assert port.shadows("", "x.example.com") and port.shadows("*.example.com", "abc.example.com")
    assert not port.shadows("", "bar.com") and not port.shadows("abc.example.com", "abc.example.com")
    # A route wider than a more specific listener keeps the rest; Envoy sends that listener's names on.
    assert not port.shadows("", "*.com")


def test_a_less_specific_listener_does_not_serve_a_more_specific_listeners_hosts() -> None:
    h = GatewayHarness()
    listeners = [
        listener("empty", from_="All"),
        listener("wild", hostname="*.example.com", from_="All"),
        listener("wild-foo", hostname="*.foo.example.com", from_="All"),
        listener("abc", hostname="abc.foo.example.com", from_="All"),
    ]
    h.put(gateway_class(), gateway("gw", listeners), service("web"))
    everything = ["bar.com", "*.example.com", "*.foo.example.com", "abc.foo.example.com"]
    h.put(
        _attached("r-empty", "empty", "/empty", everything),
        _attached("r-wild", "wild", "/wild", everything),
        _attached("r-wild-foo", "wild-foo", "/wild-foo", everything),
    )
    # Each host serves the routes of its most specific listener only; `abc` has none yet: an empty
    # virtual host (404), not a fall-through to `*.foo.example.com`.
    assert _domains(h) == {
        "*.example.com": ["/wild"],
        "*.foo.example.com": ["/wild-foo"],
        "abc.foo.example.com": [],
        "bar.com": ["/empty"],
    }
    h.assert_matches_full_build()
    h.put(_attached("r-abc", "abc", "/abc"))
    assert _domains(h)["abc.foo.example.com"] == ["/abc"]
    status = h.gw_status("Gateway", f"{NS}/gw")
    # Isolation removes nothing from attachment: every route is still attached to its listener.
    assert [lst.attached_routes for lst in status.listeners] == [1, 1, 1, 1]
    h.assert_matches_full_build()
    # The specific listener goes: its names fall back to the wildcard listener's routes.
    h.put(gateway("gw", listeners[:3]))
    assert _domains(h)["abc.foo.example.com"] == ["/wild-foo"]
    h.assert_matches_full_build()


def test_listener_without_routes_still_isolates_its_hostname() -> None:
    h = GatewayHarness()
    h.put(
        gateway_class(),
        gateway("gw", [listener("empty"), listener("a", hostname="a.example.com")]),
        service("web"),
        _attached("r", "empty", "/"),
    )
    assert _domains(h) == {"*": ["/"], "a.example.com": []}
    assert cluster_of(h.routes("*")[0]) == svc_cluster()
    h.assert_matches_full_build()


def _https_gateway(h: GatewayHarness) -> None:
    listeners = [
        listener("https", 443, "HTTPS", certs=CERTS),
        listener("second", 443, "HTTPS", hostname="second.example.org", certs=CERTS),
        listener("wild", 443, "HTTPS", hostname="*.wildcard.org", certs=CERTS),
        listener("fourth", 443, "HTTPS", hostname="fourth.wildcard.org", certs=CERTS),
    ]
    h.put(gateway_class(), tls_secret("cert", A_CERT, namespace=NS), gateway("gw", listeners), service("web"))


def test_https_hosts_of_another_listener_are_misdirected() -> None:
    h = GatewayHarness()
    _https_gateway(h)
    h.put(
        _attached("r1", "https", "/one", ["example.org"]),
        _attached("r2", "second", "/two"),
        _attached("r3", "wild", "/three"),
    )
    chains = _chains(h)
    assert sorted(chains) == ["", "*.wildcard.org", "fourth.wildcard.org", "second.example.org"]
    # The chain without server name (no SNI, or an unknown one): its own hosts are served, the names
    # of the more specific listeners are misdirected.
    assert _domains(h, chains[""]) == {
        "*": [],
        "*.wildcard.org": ["421"],
        "example.org": ["/one"],
        "fourth.wildcard.org": ["421"],
        "second.example.org": ["421"],
    }
    assert _domains(h, chains["second.example.org"]) == {"*": ["421"], "second.example.org": ["/two"]}
    assert _domains(h, chains["*.wildcard.org"]) == {
        "*": ["421"],
        "*.wildcard.org": ["/three"],
        "fourth.wildcard.org": ["421"],
    }
    # A listener without routes answers 404 for its own names and 421 for the others.
    assert _domains(h, chains["fourth.wildcard.org"]) == {"*": ["421"], "fourth.wildcard.org": []}
    misdirected = h.routes("*", chains["second.example.org"])[0]
    assert misdirected.direct_response.status == 421
    h.assert_matches_full_build()


def test_a_route_naming_a_more_specific_listeners_host_is_misdirected_there() -> None:
    h = GatewayHarness()
    _https_gateway(h)
    h.put(_attached("r", "wild", "/x", ["fourth.wildcard.org", "third.wildcard.org"]))
    domains = _domains(h, _chains(h)["*.wildcard.org"])
    assert domains["fourth.wildcard.org"] == ["421"]
    assert domains["third.wildcard.org"] == ["/x"]
    h.assert_matches_full_build()


# -- addresses and GatewayClass version (gateways.py) ----------------------------------------------


def test_gateway_status_carries_the_gateways_addresses() -> None:
    h = GatewayHarness(settings=TranslatorSettings(addresses=("10.0.0.1", "gw.example.com")))
    h.put(gateway_class(), gateway("gw"), service("web"), http_route())
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert gw.addresses == ["10.0.0.1", "gw.example.com"]
    assert cond(h.gw_status("GatewayClass", "higress"), "SupportedVersion") == ("True", "SupportedVersion")
    # Asking for one of them (or for any address of a type) is fine.
    asked = gateway("gw")
    asked["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.0.0.1"}, {"type": "Hostname"}]
    h.put(asked)
    assert cond(h.gw_status("Gateway", f"{NS}/gw"), "Programmed") == ("True", "Programmed")
    h.assert_matches_full_build()


def test_a_gateway_asking_for_an_address_it_cannot_have_is_not_programmed() -> None:
    h = GatewayHarness(settings=TranslatorSettings(addresses=("10.0.0.1",)))
    asked = gateway("gw")
    asked["spec"]["addresses"] = [{"type": "IPAddress", "value": "10.9.9.9"}]
    h.put(gateway_class(), asked, service("web"), http_route())
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert cond(gw, "Accepted") == ("True", "Accepted")
    assert cond(gw, "Programmed") == ("False", "AddressNotUsable")
    assert "10.9.9.9 is not one of the gateway's addresses (10.0.0.1)" in gw.reason
    # Its listeners are not served, and say why.
    assert "*" not in _domains(h)
    assert "10.9.9.9" in gw.listeners[0].conditions[1].message
    # A fresh body: the folded state holds the one put before.
    named = gateway("gw")
    named["spec"]["addresses"] = [{"type": "example.com/Named", "value": "x"}]
    h.put(named)
    assert cond(h.gw_status("Gateway", f"{NS}/gw"), "Programmed") == ("False", "UnsupportedAddress")
    h.assert_matches_full_build()


def test_settings_round_trip_through_the_ledgers_translator_version() -> None:
    settings = TranslatorSettings(http_port=8080, addresses=("10.0.0.1", "gw.example.com"))
    assert " addresses=10.0.0.1,gw.example.com" in settings.describe()
    assert TranslatorSettings.parse(settings.describe()) == settings
    assert TranslatorSettings.parse(TranslatorSettings().describe()) == TranslatorSettings()
