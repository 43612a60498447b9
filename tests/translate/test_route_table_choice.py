"""`--route-tables auto` (docs/route-table-split.md): below SPLIT_FROM_HOSTS virtual hosts the output is
byte for byte the one-table output; from it, exactly the output of as many tables forced; the table count
grows with the hosts; crossing either way publishes what a full build of the new state would, whatever
came before."""

from __future__ import annotations

from typing import Any

import pytest

from tests.translate.translator_harness import HTTP_ROUTES, Harness, N, ingress_body, service_body
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import LISTENER, ROUTE, SCOPED_ROUTE
from xdsbus.translate.route_table_choice import HOSTS_PER_TABLE, SPLIT_FROM_HOSTS, choose
from xdsbus.translate.route_tables import KEYS, TABLE_HEADER, table_name
from xdsbus.translate.settings import TranslatorSettings

ONE_TABLE = TranslatorSettings(route_tables=0)
# Besides the many exact hosts: a wildcard host, the `*` host and a host with error pages (whose
# re-issued requests carry the table key only when split).
SPECIAL = 3


def _base() -> list[dict[str, Any]]:
    errors = ingress_body("errors", [("errors.example.com", [("/", "web", 80)])])
    errors["metadata"]["annotations"] = {N + "default-backend": "pages", N + "custom-http-errors": "404"}
    return [
        service_body("web"),
        service_body("pages"),
        ingress_body("wild", [("*.example.com", [("/", "web", 80)]), ("", [("/", "web", 80)])]),
        errors,
    ]


def _exact(count: int, name: str = "many", first: int = 0) -> dict[str, Any]:
    return ingress_body(
        name, [(f"h{i}.example.com", [("/", "web", 80)]) for i in range(first, first + count)]
    )


def _built(settings: TranslatorSettings | None, hosts: int, *more: dict[str, Any]) -> Harness:
    """A harness holding the special hosts, enough exact hosts to make `hosts` virtual hosts and `more`,
    in one update."""
    h = Harness(settings=settings)
    h.put(*_base(), _exact(hosts - SPECIAL), *more)
    return h


def _resources(h: Harness) -> dict[ResourceKey, str]:
    return {key: res.sha256 for key, res in h.translator.table.items()}


def test_auto_splits_from_the_threshold_into_a_power_of_two_growing_with_the_hosts() -> None:
    assert choose(80, "auto", 0).tables == 0
    assert choose(80, "auto", SPLIT_FROM_HOSTS - 1).tables == 0
    first = choose(80, "auto", SPLIT_FROM_HOSTS).tables
    assert first >= 2 and first & (first - 1) == 0
    assert HOSTS_PER_TABLE <= SPLIT_FROM_HOSTS / first < 2 * HOSTS_PER_TABLE
    assert choose(80, "auto", 2 * SPLIT_FROM_HOSTS - 1).tables == first
    assert choose(80, "auto", 2 * SPLIT_FROM_HOSTS).tables == 2 * first
    assert choose(80, "auto", 10**9).tables == KEYS
    # A forced count holds whatever the hosts.
    assert choose(80, 0, 10**6).tables == 0
    assert choose(80, 4, 1).tables == 4


def test_below_the_threshold_auto_publishes_byte_for_byte_the_one_table() -> None:
    auto = _built(None, SPLIT_FROM_HOSTS - 1)
    assert auto.translator.route_tables.tables == 0
    assert _resources(auto) == _resources(_built(ONE_TABLE, SPLIT_FROM_HOSTS - 1))
    assert not auto.names(SCOPED_ROUTE)
    assert TABLE_HEADER not in str(auto.vhost("errors.example.com"))


def test_from_the_threshold_auto_publishes_what_the_forced_split_does() -> None:
    auto = _built(None, SPLIT_FROM_HOSTS)
    tables = auto.translator.route_tables.tables
    assert tables == choose(80, "auto", SPLIT_FROM_HOSTS).tables
    assert _resources(auto) == _resources(_built(TranslatorSettings(route_tables=tables), SPLIT_FROM_HOSTS))
    assert HTTP_ROUTES not in auto.names(ROUTE)
    assert {table_name(80, t) for t in range(tables)} <= auto.names(ROUTE)
    assert len(auto.names(SCOPED_ROUTE)) == KEYS


@pytest.mark.parametrize("batched", [False, True])
def test_crossing_the_threshold_both_ways_publishes_what_a_full_build_would(batched: bool) -> None:
    h = _built(None, SPLIT_FROM_HOSTS - 2)
    h.commit()
    # Up: two hosts in one update, or one by one.
    if batched:
        h.put(_exact(2, "more", first=10**6))
    else:
        h.put(_exact(1, "more", first=10**6))
        h.put(_exact(2, "more", first=10**6))
    up = h.commit()
    split = h.translator.route_tables.tables
    assert split == choose(80, "auto", SPLIT_FROM_HOSTS).tables
    forced = TranslatorSettings(route_tables=split)
    assert _resources(h) == _resources(_built(forced, SPLIT_FROM_HOSTS - 2, _exact(2, "more", first=10**6)))
    h.assert_matches_full_build()
    # The listener changes once (Envoy drains its connections); the one table goes, tables and scopes come.
    assert ResourceKey(LISTENER, "0.0.0.0_80") in {k for k, _ in up.changed}
    assert ResourceKey(ROUTE, HTTP_ROUTES) in up.removed
    assert sum(k.type_url == SCOPED_ROUTE for k, _ in up.changed) == KEYS
    # Down: the same Ingress gone; byte for byte the one table again.
    h.delete("Ingress", "default/more")
    down = h.commit()
    assert h.translator.route_tables.tables == 0
    assert _resources(h) == _resources(_built(ONE_TABLE, SPLIT_FROM_HOSTS - 2))
    h.assert_matches_full_build()
    assert sum(k.type_url == SCOPED_ROUTE for k in down.removed) == KEYS
    assert {k.name for k in down.removed if k.type_url == ROUTE} == {table_name(80, t) for t in range(split)}


def test_a_new_table_count_republishes_every_table_and_scope_and_drops_the_tables_beyond_it() -> None:
    h = _built(None, 2 * SPLIT_FROM_HOSTS - 1)
    before = h.translator.route_tables.tables
    h.commit()
    h.put(_exact(1, "more", first=10**6))
    after = h.translator.route_tables.tables
    assert after == 2 * before
    changes = h.commit()
    forced = TranslatorSettings(route_tables=after)
    assert _resources(h) == _resources(
        _built(forced, 2 * SPLIT_FROM_HOSTS - 1, _exact(1, "more", first=10**6))
    )
    h.assert_matches_full_build()
    # Same form, so the listener is unchanged; the scopes of the keys whose key mod the count changed (half
    # of them, the count doubling) read their new table.
    assert not [k for k, _ in changes.changed if k.type_url == LISTENER]
    assert sum(k.type_url == SCOPED_ROUTE for k, _ in changes.changed) == KEYS // 2
    h.delete("Ingress", "default/more")
    shrunk = h.commit()
    assert {k.name for k in shrunk.removed if k.type_url == ROUTE} == {
        table_name(80, t) for t in range(before, after)
    }
    h.assert_matches_full_build()


def test_auto_is_recorded_with_the_translator_settings_and_an_old_version_reads_as_one_table() -> None:
    assert TranslatorSettings().describe().endswith(" route_tables=auto")
    assert TranslatorSettings.parse(TranslatorSettings().describe()) == TranslatorSettings()
    assert "route_tables" not in ONE_TABLE.describe()
    assert TranslatorSettings.parse("xdsbus-translate/3 http=80 https=443") == ONE_TABLE


def test_the_choice_says_what_is_in_use_and_why() -> None:
    assert choose(80, "auto", 12).describe() == (
        f"one table: 12 virtual hosts on port 80, fewer than {SPLIT_FROM_HOSTS:,} (--route-tables auto "
        f"splits from {SPLIT_FROM_HOSTS:,})"
    )
    split = choose(80, "auto", 20_000)
    assert split.describe().startswith(f"split into {split.tables} tables: 20,000 virtual hosts on port 80")
    assert choose(80, 0, 3).describe() == "one table (--route-tables 0): 3 virtual hosts on port 80"
    assert choose(80, 4, 3).describe() == "split into 4 tables (--route-tables 4): 3 virtual hosts on port 80"
