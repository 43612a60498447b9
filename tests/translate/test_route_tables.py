"""The split HTTP route table (docs/route-table-split.md): the key Envoy computes for a host equals the one
the builder files the host under; every table holds the wildcard and `*` hosts; a change to one host
republishes its own table alone; the listener reads the tables through Scoped RDS; off, nothing changes."""

from __future__ import annotations

import re
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from tests.translate.translator_harness import HTTP_LISTENER, HTTP_ROUTES, Harness, ingress_body, service_body
from xdsbus.contract.type_urls import LISTENER, ROUTE, SCOPED_ROUTE
from xdsbus.translate.route_tables import KEY_FORMAT, KEYS, TABLE_HEADER, host_key, table_name, table_of
from xdsbus.translate.settings import TranslatorSettings

TABLES = 4
SPLIT = TranslatorSettings(route_tables=TABLES)
EXACT = ["a.example.com", "b.example.com", "shop1.example.org", "shop2.example.org", "x"]


def _hosts(hosts: list[str], name: str = "site") -> dict[str, Any]:
    return ingress_body(name, [(h, [("/", "web", 80)]) for h in hosts])


def _key_by_regexes(host: str) -> int:
    """What Envoy's CEL expression gives: the weights of the patterns `host` matches (Python's re reads
    these patterns as RE2 does)."""
    terms = re.findall(r"request\.host\.matches\('([^']*)'\) \? (\d+) : 0", KEY_FORMAT)
    assert len(terms) == KEYS.bit_length() - 1
    return sum(int(weight) for pattern, weight in terms if re.search(pattern, host))


@pytest.mark.parametrize(
    ("host", "same_as"),
    [
        ("a.example.com", "a.example.com"),
        ("A.Example.COM", "a.example.com"),
        ("a.example.com:8080", "a.example.com"),
        ("h12345.bench.local", "h12345.bench.local"),
        ("www.shop-7.example", "www.shop-7.example"),
        ("x", "x"),
        ("X:80", "x"),
        ("[::1]:80", "[::1]"),
        ("under_score.y", "under_score.y"),
        ("", ""),
    ],
)
def test_the_key_envoy_computes_is_the_key_the_builder_files_the_host_under(host: str, same_as: str) -> None:
    assert _key_by_regexes(host) == host_key(host)
    # Port and case are ignored, as Envoy's virtual host matching ignores them.
    assert host_key(host) == host_key(same_as)


def test_keys_spread_hosts_over_the_tables() -> None:
    hosts = [f"h{i}.bench.local" for i in range(2000)] + [f"www.shop{i}.example" for i in range(100)]
    used = {host_key(h) for h in hosts}
    assert len(used) >= 100


def _table(h: Harness, t: int) -> route_pb2.RouteConfiguration:
    return h.get(ROUTE, table_name(80, t), route_pb2.RouteConfiguration)


def _domains(config: route_pb2.RouteConfiguration) -> list[str]:
    return [d for v in config.virtual_hosts for d in v.domains]


def test_every_table_holds_its_exact_hosts_and_every_wildcard_and_catch_all_host() -> None:
    h = Harness(settings=SPLIT)
    h.put(service_body("web"), _hosts([*EXACT, "*.example.com", ""]))
    assert HTTP_ROUTES not in h.names(ROUTE)
    assert {table_name(80, t) for t in range(TABLES)} <= h.names(ROUTE)
    for t in range(TABLES):
        config = _table(h, t)
        mine = sorted(e for e in EXACT if table_of(e, TABLES) == t)
        # The wildcard and `*` hosts first, then the table's exact hosts, each sorted.
        assert _domains(config) == ["*", "*.example.com", *mine]
        assert config.ignore_port_in_host_matching
        assert list(config.request_headers_to_remove) == [TABLE_HEADER]
    scopes = [
        h.get(SCOPED_ROUTE, n, scoped_route_pb2.ScopedRouteConfiguration) for n in h.names(SCOPED_ROUTE)
    ]
    assert len(scopes) == KEYS
    for s in scopes:
        (fragment,) = s.key.fragments
        assert s.route_configuration_name == table_name(80, int(fragment.string_key) % TABLES)
    h.assert_matches_full_build()


def test_a_change_to_one_host_republishes_its_table_alone() -> None:
    h = Harness(settings=SPLIT)
    h.put(service_body("web"), _hosts(["*.example.com", ""]), _hosts(EXACT, "exact"))
    h.commit()
    h.put(_hosts(["new.example.com"], "new"))
    changed = {k.name for k, _ in h.commit().changed if k.type_url in (ROUTE, SCOPED_ROUTE, LISTENER)}
    assert changed == {table_name(80, table_of("new.example.com", TABLES))}
    # A wildcard host is in every table.
    h.put(_hosts(["*.example.org"], "wild"))
    changed = {k.name for k, _ in h.commit().changed if k.type_url == ROUTE}
    assert changed == {table_name(80, t) for t in range(TABLES)}
    h.assert_matches_full_build()


def test_the_listener_reads_the_tables_through_scoped_rds_keyed_by_the_early_header_mutation() -> None:
    h = Harness(settings=SPLIT)
    h.put(service_body("web"), _hosts(EXACT))
    listener = h.get(LISTENER, HTTP_LISTENER, listener_pb2.Listener)
    manager = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(manager)
    assert not manager.HasField("rds")
    assert manager.scoped_routes.name == HTTP_ROUTES
    (fragment,) = manager.scoped_routes.scope_key_builder.fragments
    assert fragment.header_value_extractor.name == TABLE_HEADER
    (mutation,) = manager.early_header_mutation_extensions
    assert KEY_FORMAT.encode() in mutation.typed_config.value


def test_unsplit_is_one_route_configuration_without_scopes() -> None:
    h = Harness()
    h.put(service_body("web"), _hosts([*EXACT, "*.example.com", ""]))
    assert h.names(ROUTE) == {HTTP_ROUTES}
    assert not h.names(SCOPED_ROUTE)
    config = h.route_config()
    assert not config.request_headers_to_remove


def test_the_split_is_recorded_with_the_translator_settings() -> None:
    assert SPLIT.describe().endswith(" route_tables=4")
    assert TranslatorSettings.parse(SPLIT.describe()) == SPLIT
    assert "route_tables" not in TranslatorSettings(route_tables=0).describe()
