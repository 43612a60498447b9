"""Rollback through a real Envoy (docs/rollback.md): `xdsbus rollback V`, run as the NATS user
`operator`, moves traffic back to what version V routed; events folded while pinned change nothing
in Envoy though `xdsbus status` shows them; `xdsbus unpin` moves traffic to the fold's head; the
listener, whose bytes never changed, is never modified or drained; a replay gives the pinned version's
digest."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.builder.support import run_cli
from xdsbus.contract.pins import PIN_STATUS_KIND
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import reader
from xdsbus.translate.route_tables import table_name, table_of
from xdsbus_dev.harness.stack import HOST, Stack, ingress_manifest

pytestmark = pytest.mark.slow

SCOPE = "default"


def _route_of(versions: dict[str, str], port: int) -> str:
    """The key in Envoy's versions of the route configuration serving HOST: `http.<port>`, or the table of
    HOST when the table is split (docs/route-table-split.md)."""
    one_table = f"route/http.{port}"
    tables = sum(key.startswith(one_table + ".") for key in versions)
    return f"route/{table_name(port, table_of(HOST, tables))}" if tables else one_table


async def test_rollback_and_unpin_move_envoy_traffic_without_a_listener_drain(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1, nats_users=True) as stack, stack.bus() as bus:
        envoy = stack.envoy
        assert envoy is not None
        operator = stack.nats.client_env("operator")

        async def xdsbus(*args: str) -> dict:
            rc, out, err = await run_cli(stack.nats.url, *args, "--json", env={**os.environ, **operator})
            assert rc == 0 and "Traceback" not in err, f"xdsbus {args}: {rc} {err}"
            return json.loads(out)

        async def head() -> int:
            tip = await reader.head(bus, SCOPE)
            assert tip is not None
            return int(tip.record.version)

        await stack.wait_for_pod("/a", "echo-a-")
        good = await head()
        # A bad change: /a goes to echo-b. Only the route configuration changes.
        stack.write("ingress.yaml", [ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/", "echo-b")])])
        await stack.wait_for_pod("/a", "echo-b-")
        listener = f"listener/{stack.listener}"
        before = await envoy.versions()
        modified = await envoy.stat("listener_manager.listener_modified")

        out = await xdsbus("rollback", str(good), "--operator", "ana", "--reason", "echo-b cannot serve /a")
        assert out["status"]["state"] == "accepted", out
        await stack.wait_for_pod("/a", "echo-a-")
        pinned = await head()
        assert pinned == out["event_seq"]
        versions = await envoy.versions()
        assert versions[_route_of(versions, stack.gateway_port)] == str(pinned)
        assert versions[listener] == before[listener], "the listener was sent again"

        # Pinned: a new route is folded (status) but reaches no Envoy.
        stack.write(
            "ingress.yaml",
            [ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/b", "echo-a"), ("/", "echo-b")])],
        )

        async def folded() -> dict | None:
            status = (await xdsbus("status", f"{PIN_STATUS_KIND}/{SCOPE}"))[0]
            return (
                status if status["pin"].get("folded_seq", 0) >= await last_event_seq(bus) > pinned else None
            )

        status = await stack.wait(folded, timeout=15, what="the builder folding the new Ingress while pinned")
        assert status["pin"]["target"] == good and status["pin"]["by"] == "ana"
        assert status["pin"]["serving_version"] == pinned
        assert await head() == pinned
        assert await stack.pod_for("/b") == "echo-b-7c9d5f-1"

        # A replay at the pinned version gives its digest.
        replayed = await xdsbus("replay", "--seq", str(pinned))
        live = (await reader.find(bus, SCOPE, pinned)).record
        assert (replayed["digest"], replayed["pinned_to"]) == (live.digest, good)

        out = await xdsbus("unpin", "--operator", "ana")
        assert out["status"]["state"] == "accepted", out
        await stack.wait_for_pod("/b", "echo-a-")
        await stack.wait_for_pod("/a", "echo-b-")
        assert (await reader.head(bus, SCOPE)).record.digest == status["pin"]["unpinned_digest"]  # type: ignore[union-attr]

        assert (await envoy.versions())[listener] == before[listener]
        stats = await envoy.stats()
        assert stats["listener_manager.listener_modified"] == modified
        assert stats["listener_manager.total_listeners_draining"] == 0
