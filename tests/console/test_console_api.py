"""The console's JSON API over a real ledger, read with the reader's credentials (docs/console.md): the
timeline and what triggered each version, one version's changes, a diff as Envoy JSON side by side
with secrets never shown, objects with a rejection's reason, leases, live notices, and no writes
(rollback needs --allow-rollback and operator tokens; test_console_browser.py rolls back)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from tests.console.support import SHOP_CLUSTER, ConsoleStack, console_stack
from xdsbus import proxy_store
from xdsbus.contract.proxy_status import ProxyStatus, TypeSync, proxy_key
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER
from xdsbus_dev.harness.processes import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ConsoleStack]:
    async with console_stack(tmp_path_factory.mktemp("console-api")) as running:
        yield running


async def test_the_timeline_lists_versions_with_what_triggered_them(stack: ConsoleStack) -> None:
    version = await stack.change_endpoints()
    data = await stack.get("/api/scopes/default/versions")
    assert data["head"] == version
    newest = data["versions"][-1]
    assert newest["version"] == version
    assert newest["events"] == newest["last_seq"] - newest["first_seq"] + 1
    assert newest["changed"] >= 1 and newest["changed_bytes"] > 0
    assert newest["triggers"]["groups"] == [
        {"source": "test/console", "kind": "EndpointSlice", "op": "upsert", "count": 1}
    ]
    assert newest["triggers"]["keys"] == ["EndpointSlice default/shop-1"]
    # The in-process builder took the lease once: its term record is on the timeline.
    assert [t["holder"] for t in data["terms"]] == ["in-process"]
    # A range narrows the timeline without losing the whole ledger's extent.
    first = data["all"][0][0]
    only_first = await stack.get(f"/api/scopes/default/versions?from={first}&to={first}")
    assert [v["version"] for v in only_first["versions"]] == [first]
    assert only_first["count"] == data["count"]


async def test_a_version_shows_its_changed_and_removed_resources(stack: ConsoleStack) -> None:
    version = await stack.change_endpoints()
    data = await stack.get(f"/api/scopes/default/versions/{version}")
    assert [(r["type"], r["name"]) for r in data["changed_resources"]] == [
        ("ClusterLoadAssignment", SHOP_CLUSTER)
    ]
    assert data["changed_resources"][0]["type_url"] == ENDPOINT
    assert data["removed_resources"] == []
    await stack.get("/api/scopes/default/versions/999999", status=404)
    await stack.get("/api/scopes/default/versions/abc", status=400)


async def test_a_diff_shows_a_changed_cluster_as_envoy_json_side_by_side(stack: ConsoleStack) -> None:
    before = (await stack.get("/api/scopes/default/versions"))["head"]
    after = await stack.change_cluster()
    data = await stack.get(f"/api/scopes/default/diff?a={before}&b={after}")
    changed = {(r["type_url"], r["name"]): r for r in data["resources"]}
    assert list(changed) == [(CLUSTER, SHOP_CLUSTER)]
    shop = changed[(CLUSTER, SHOP_CLUSTER)]
    assert shop["change"] == "changed" and data["changed"] == 1
    # Both sides as Envoy JSON, aligned: the name on one line of both, the new protocol options right only.
    assert ["=", f'  "name": "{SHOP_CLUSTER}",', f'  "name": "{SHOP_CLUSTER}",'] in shop["rows"]
    right_only = "".join(right or "" for op, _, right in shop["rows"] if op in "+~")
    assert "http2_protocol_options" in right_only
    left = "".join(left or "" for _, left, _ in shop["rows"])
    assert "http2_protocol_options" not in left
    # Diffing a version with itself shows nothing; an unknown version is named.
    same = await stack.get(f"/api/scopes/default/diff?a={after}&b={after}")
    assert same["resources"] == []
    missing = await stack.get(f"/api/scopes/default/diff?a={before}&b=999999", status=404)
    assert "999999" in missing["error"]


async def test_objects_show_a_rejected_ingress_and_why(stack: ConsoleStack) -> None:
    async def rejected() -> list[dict[str, Any]]:
        data = await stack.get("/api/objects?q=too-greedy")
        return [o for o in data["objects"] if o["state"] == "rejected"]

    found = await eventually(rejected, timeout=20, what="the rejected Ingress in the objects view")
    assert found[0]["kind"] == "Ingress" and found[0]["key"] == "default/too-greedy"
    assert "program size" in found[0]["reason"]
    accepted = await stack.get("/api/objects?state=accepted&q=ingress shop")
    assert [o["key"] for o in accepted["objects"]] == ["default/shop"]


async def test_an_object_links_to_the_versions_its_changes_went_into(stack: ConsoleStack) -> None:
    version = await stack.change_endpoints()
    data = await stack.get("/api/scopes/default/history?kind=EndpointSlice&key=default/shop-1")
    changes = data["changes"]
    assert [c["op"] for c in changes] == ["upsert"] * len(changes) and len(changes) >= 2
    assert changes[-1]["version"] == version
    assert changes[-1]["seq"] == version  # the change was the version's only event
    timeline = await stack.get("/api/scopes/default/versions")
    ranges = {v["version"]: (v["first_seq"], v["last_seq"]) for v in timeline["versions"]}
    for change in changes:
        first, last = ranges[change["version"]]
        assert first <= change["seq"] <= last
    # The rejected Ingress changed no resource: its event sits in the range of the version after it.
    rejected = await stack.get("/api/scopes/default/history?kind=Ingress&key=default/too-greedy")
    (event,) = rejected["changes"]
    assert event["source"] == "test/console" and event["version"] in ranges
    await stack.get("/api/scopes/default/history?kind=Ingress", status=400)


async def test_sources_show_who_holds_each_lease(stack: ConsoleStack) -> None:
    data = await stack.get("/api/sources")
    leases = {lease["name"]: lease for lease in data["leases"]}
    assert leases["builder.default"]["holder"] == "in-process"
    assert leases["builder.default"]["revision"] > 0
    # Renewed every third of its TTL (the layout's default, 15 s).
    assert 0 <= leases["builder.default"]["age_seconds"] < 15
    assert leases["builder.default"]["renewed"]
    assert [(b["scope"], b["holder"]) for b in data["builders"]] == [("default", "in-process")]
    assert data["registries"] == []

    async def reported() -> dict[str, Any] | None:
        # Reports come every third of the lease TTL: the first one was written before any publish.
        (watcher,) = (await stack.get("/api/sources"))["watchers"]
        return watcher if watcher["events_published"] >= 4 else None

    watcher = await eventually(reported, timeout=15, what="the watcher's report counting its events")
    assert watcher["source"] == "test/console" and watcher["state"] == "publishing"
    assert watcher["holder"] == stack.source.instance_id and watcher["term"] > 0
    assert watcher["last_error"] == "" and 0 <= watcher["lag_seconds"] < 60


async def test_new_versions_arrive_as_server_sent_events(stack: ConsoleStack) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{stack.url}/api/live") as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        await response.content.readline()  # the retry line: the stream is open and the feed subscribed
        version = await stack.change_endpoints()

        async def notice() -> dict[str, Any]:
            while True:
                line = (await response.content.readline()).decode()
                if line.startswith("data: "):
                    data: dict[str, Any] = json.loads(line.removeprefix("data: "))
                    if data.get("version") == version:
                        return data

        assert await asyncio.wait_for(notice(), 10) == {
            "kind": "version",
            "scope": "default",
            "version": version,
            "term": 0,
        }


async def test_the_page_is_served_offline_and_nothing_can_be_written(stack: ConsoleStack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(stack.url + "/") as response:
            page = await response.text()
            assert response.status == 200
            assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        # Everything the page loads comes from the console itself.
        assert "http://" not in page and "https://" not in page
        for name in ("console.js", "console.css"):
            async with session.get(f"{stack.url}/static/{name}") as response:
                assert response.status == 200
                assert "https://" not in await response.text()
        async with session.post(stack.url + "/api/objects", data=b"{}") as response:
            assert response.status == 405
        # Without --allow-rollback there is no rollback to offer, nor to post to.
        assert await stack.get("/api/config") == {"rollback": False}
        async with session.post(stack.url + "/api/scopes/default/rollback", json={"version": 1}) as response:
            assert response.status in (404, 405)


async def test_the_proxies_view_shows_each_proxys_state_against_the_head(stack: ConsoleStack) -> None:
    head = (await stack.get("/api/scopes/default/versions"))["head"]
    # What an edge writes for a proxy whose last listeners were NACKed (xdsbus.proxy_store's format).
    status = ProxyStatus(
        node_id="gw-1",
        scope="default",
        edge="edge-a",
        connected_at=1.0,
        updated_at=2.0,
        version=head,
        types=[
            TypeSync(type_url=CLUSTER, sent=str(head), acked=str(head), current=head, acked_at=2.0),
            TypeSync(
                type_url=LISTENER,
                sent=str(head),
                nacked=str(head),
                error="duplicate listener",
                current=head - 1,
                nacked_at=2.0,
            ),
        ],
    )
    await proxy_store.put_all(stack.bus, [(proxy_key("gw-1", "edge-a"), proxy_store.encode(status))])
    data = await stack.get("/api/proxies")
    assert data["available"] is True
    (proxy,) = data["proxies"]
    assert (proxy["node_id"], proxy["edge"], proxy["head"]) == ("gw-1", "edge-a", head)
    states = {t["type"]: (t["state"], t["error"]) for t in proxy["types"]}
    assert states == {"clusters": ("SYNCED", ""), "listeners": ("NACKED", "duplicate listener")}
