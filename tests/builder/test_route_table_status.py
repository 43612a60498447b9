"""The builder says which form the HTTP port's route table has and why (docs/route-table-split.md):
`xdsbus status Builder/http.<port>` names one table or the number of tables, the hosts counted and the
rule, and follows a crossing of the threshold both ways."""

from __future__ import annotations

import copy

from tests.builder.support import run_cli, running_builder, wait_for_caught_up
from tests.support.objects import ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.translate.route_table_choice import SPLIT_FROM_HOSTS, choose
from xdsbus_dev.harness.processes import eventually


def _many(count: int) -> dict[str, object]:
    """One Ingress with `count` hosts."""
    body = ingress("many", "h0.example.com", "web")
    rule = body["spec"]["rules"][0]
    body["spec"]["rules"] = [{**copy.deepcopy(rule), "host": f"h{i}.example.com"} for i in range(count)]
    return body


async def _shows(url: str, reason: str) -> None:
    """Until `xdsbus status Builder/http.80` prints the entry with this reason (written after the version)."""
    expected = f"Builder/http.80 (builder/default): accepted: {reason}"

    async def line() -> bool:
        rc, out, _ = await run_cli(url, "status", "Builder/http.80")
        assert out.splitlines() == [expected], out
        return rc == 0

    await eventually(line, what=expected)


async def test_the_route_table_form_and_its_reason_are_in_xdsbus_status(bus, nats_server):
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(service("web"))
        await src.put(ingress("one", "one.example.com", "web"))
        await wait_for_caught_up(bus)
        await _shows(nats_server.url, choose(80, "auto", 1).describe())
        await src.put(_many(SPLIT_FROM_HOSTS))
        await wait_for_caught_up(bus)
        split = choose(80, "auto", SPLIT_FROM_HOSTS + 1)
        assert split.tables > 0
        await _shows(nats_server.url, split.describe())
        await src.remove("Ingress", "default/many")
        await wait_for_caught_up(bus)
        await _shows(nats_server.url, choose(80, "auto", 1).describe())
