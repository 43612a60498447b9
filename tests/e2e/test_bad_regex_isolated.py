"""One Ingress with a regex Envoy would refuse (RE2 program size over Envoy's limit) next to a good one,
with a real Envoy: every Ingress route shares one route configuration, so had the regex reached Envoy it
would NACK the whole configuration and no host would update. The builder rejects that Ingress alone
(docs/design.md §6): the good host keeps serving and keeps taking changes, Envoy never rejects an update,
and `xdsbus status` names the bad Ingress with the regex's program size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.ingress_support import Expect, IngressPath, cli_status, ingress, wait_all, wait_statuses
from xdsbus.contract.status import Verdict
from xdsbus_dev.harness.stack import Stack, edge_installed

pytestmark = pytest.mark.slow

# Envoy refuses it: RE2 program size 246 > 100 (Envoy's default re2.max_program_size error level).
OVERSIZED_REGEX = "/api/[a-z0-9]{1,64}/items/[0-9]{1,20}"
GOOD_HOST = "good.example.com"
BAD_HOST = "bad.example.com"


def _good(service: str) -> dict[str, Any]:
    return ingress("good", {GOOD_HOST: [IngressPath("/", service)]})


BAD = ingress(
    "bad",
    {BAD_HOST: [IngressPath(OVERSIZED_REGEX, "echo-b", "ImplementationSpecific")]},
    annotations={"higress.io/full-path-regex": "true"},
)


def _nacks(syncz: Any) -> list[dict[str, Any]]:
    """Every entry of the edge's /debug/syncz that records a NACK."""
    if isinstance(syncz, dict):
        own = [syncz] if syncz.get("nacked") else []
        return own + [n for child in syncz.values() for n in _nacks(child)]
    if isinstance(syncz, list):
        return [n for child in syncz for n in _nacks(child)]
    return []


def _rejected_updates(stats: dict[str, int]) -> dict[str, int]:
    """Envoy's xDS update_rejected counters that are not zero (RDS, LDS, CDS, ...)."""
    return {name: value for name, value in stats.items() if name.endswith("update_rejected") and value}


async def test_a_regex_envoy_would_refuse_rejects_its_ingress_alone(tmp_path: Path) -> None:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with Stack(tmp_path, edges=1, ingress=False, backends=("echo-a", "echo-b", "echo-c")) as stack:
        envoy = stack.envoy
        assert envoy is not None
        edge = stack.edges[0]
        stack.write("good.yaml", [_good("echo-a")])
        await envoy.wait_for_listener(stack.listener)
        await wait_all(stack, [Expect(GOOD_HOST, pod="echo-a")])

        # The bad Ingress arrives: the builder rejects it, naming the regex and its program size.
        stack.write("bad.yaml", [BAD])
        statuses = await wait_statuses(stack, ["good", "bad"])
        bad = statuses["bad"]
        assert bad.state is Verdict.REJECTED, bad
        assert OVERSIZED_REGEX in bad.reason and "RE2 program size 246" in bad.reason, bad.reason
        assert statuses["good"].state is Verdict.ACCEPTED
        await wait_all(stack, [Expect(GOOD_HOST, pod="echo-a"), Expect(BAD_HOST, "/api/x/items/1", 404)])

        # A later change to the good host still reaches Envoy.
        stack.write("good.yaml", [_good("echo-c")])
        await wait_all(stack, [Expect(GOOD_HOST, pod="echo-c")])

        # Envoy never refused an update and the edge saw no NACK.
        assert _rejected_updates(await envoy.stats()) == {}
        assert _nacks(await edge.syncz()) == []
        dump = json.dumps(await envoy.config_dump())
        assert "[0-9]{1,20}" not in dump

        # `xdsbus status`, as a user runs it, shows the bad Ingress rejected with the reason.
        rows = await cli_status(stack, "Ingress/demo/bad")
        assert [(r["kind"], r["key"], r["state"]) for r in rows] == [("Ingress", "demo/bad", "rejected")]
        assert "has RE2 program size 246, over Envoy's limit of 100" in rows[0]["reason"]
