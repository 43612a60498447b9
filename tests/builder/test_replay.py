"""Replay equals live (docs/design.md §5): every ledger version the builder published is reproduced by
`xdsbus replay`, starting from checkpoints; `--dump` and `ledger diff` show what a user expects."""

from __future__ import annotations

import base64
import datetime
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from tests.builder.support import (
    SCOPE,
    Marker,
    assert_chain,
    cli,
    cluster,
    random_change,
    records,
    resources_at,
    run_cli,
    running_builder,
    table_of,
    wait_for_caught_up,
)
from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.ledger import checkpoints
from xdsbus.replay import replay_to
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_dev.harness.certs import KeyPair, TestCA


async def test_replay_equals_live_for_every_version(bus, nats_server):
    src = ScriptedSource(bus)
    marker = Marker(bus)
    rng = random.Random(20240601)
    async with running_builder(bus, checkpoint_events=20):
        await marker.setup()
        for burst in range(16):
            for _ in range(rng.randint(4, 14)):
                await random_change(src, rng)
            await marker.bump()
            # Some bursts are waited for, others run into the next one: versions of one and many events.
            if burst % 3 != 1:
                await wait_for_caught_up(bus)
        final = await wait_for_caught_up(bus)

    recs = await records(bus)
    assert_chain(recs)
    assert recs[-1].version == final.version
    assert len(recs) >= 10, f"only {len(recs)} versions"
    assert len(await checkpoints.sequences(bus, SCOPE)) >= 3, "the builder saved too few checkpoints"

    from_checkpoint = 0
    for rec in recs:
        settings = TranslatorSettings.parse(rec.translator_version)
        result, translator = await replay_to(bus, SCOPE, rec.version, settings)
        assert result.digest == rec.digest, f"replay of version {rec.version} differs from the ledger"
        assert result.resource_count == rec.resource_count
        assert table_of(translator) == await resources_at(bus, rec.version)
        from_checkpoint += result.checkpoint_seq > 0
    assert from_checkpoint >= 3, "replays did not start from checkpoints"

    # The same through the command line, as an operator checks it.
    log = await cli(nats_server.url, "ledger", "log")
    assert [(r["version"], r["parent"], r["digest"]) for r in log] == [
        (r.version, r.parent, r.digest) for r in recs
    ]
    # With --terms, the builder's term record comes first, before its first version.
    with_terms = await cli(nats_server.url, "ledger", "log", "--terms")
    assert with_terms[0]["holder"] == "in-process" and with_terms[0]["after_version"] == 0
    assert [r["version"] for r in with_terms[1:]] == [r.version for r in recs]
    # The first version, one right after a checkpoint, and the head.
    saved = await checkpoints.sequences(bus, SCOPE)
    after_checkpoint = next(r.version for r in recs if r.version > saved[0])
    for version in sorted({recs[0].version, after_checkpoint, recs[-1].version}):
        shown = await cli(nats_server.url, "ledger", "show", str(version))
        replayed = await cli(nats_server.url, "replay", "--seq", str(version))
        assert replayed["digest"] == shown["digest"], f"xdsbus replay --seq {version} differs from the ledger"
        assert replayed["resources"] == shown["resources"]
        assert replayed["seq"] == version
    assert replayed["checkpoint_seq"] > 0, "the head's replay did not start from a checkpoint"


async def _setup_two_versions(bus) -> tuple[int, int]:
    """Version A: Services a (80) and b (80, 8080), endpoints of a, an Ingress to a. Version B: b gone,
    c added, a's endpoints changed."""
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(service("a"))
        await src.put(service("b", ports=(80, 8080)))
        await src.put(endpoint_slice("a", ["10.0.0.1", "10.0.0.2"]))
        await src.put(ingress("web", "shop.example.com", "a", path="/"))
        a = (await wait_for_caught_up(bus)).version
        await src.remove("Service", "default/b")
        await src.put(service("c"))
        await src.put(endpoint_slice("a", ["10.0.0.3"]))
        b = (await wait_for_caught_up(bus)).version
    return a, b


async def test_replay_dump_writes_envoy_config(bus, nats_server, tmp_path: Path):
    _, version = await _setup_two_versions(bus)
    out = tmp_path / "replayed"
    result = await cli(nats_server.url, "replay", "--seq", str(version), "--dump", str(out))
    files = {Path(p).name for p in result["files"]}
    assert {"clusters.json", "endpoints.json", "listeners.json", "routes.json"} <= files

    def load(name: str) -> list[dict]:
        return json.loads((out / name).read_text())["resources"]

    assert [c["name"] for c in load("clusters.json")] == [cluster("a"), cluster("c")]
    endpoints = {e["cluster_name"]: e for e in load("endpoints.json")}
    assert set(endpoints) == {cluster("a"), cluster("c")}
    addresses = [
        lb["endpoint"]["address"]["socket_address"]["address"]
        for group in endpoints[cluster("a")]["endpoints"]
        for lb in group["lb_endpoints"]
    ]
    assert addresses == ["10.0.0.3"]
    assert [item["name"] for item in load("listeners.json")] == ["0.0.0.0_80"]
    (routes,) = load("routes.json")
    (vhost,) = routes["virtual_hosts"]
    assert vhost["domains"] == ["shop.example.com"]
    assert vhost["routes"][0]["route"]["cluster"] == cluster("a")

    # The ledger's own copy of that version is the same configuration, byte for byte.
    from_ledger = tmp_path / "ledger"
    await cli(nats_server.url, "dump", str(from_ledger), "--version", str(version))
    for name in ("clusters.json", "endpoints.json", "listeners.json", "routes.json"):
        assert (from_ledger / name).read_text() == (out / name).read_text(), name


async def test_ledger_diff_lists_changed_resources(bus, nats_server):
    a, b = await _setup_two_versions(bus)
    diff = await cli(nats_server.url, "ledger", "diff", str(a), str(b))
    cla = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
    cds = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
    assert diff["added"] == [
        {"type_url": cds, "name": cluster("c")},
        {"type_url": cla, "name": cluster("c")},
    ]
    # Sorted by (type_url, name) like the CLI prints them: "outbound|8080|" sorts before "outbound|80|".
    assert diff["removed"] == [
        {"type_url": cds, "name": cluster("b", 8080)},
        {"type_url": cds, "name": cluster("b")},
        {"type_url": cla, "name": cluster("b", 8080)},
        {"type_url": cla, "name": cluster("b")},
    ]
    assert diff["changed"] == [{"type_url": cla, "name": cluster("a")}]

    text = await cli(nats_server.url, "ledger", "diff", str(a), str(b), as_json=False)
    assert f"+ Cluster {cluster('c')}" in text
    assert f"- Cluster {cluster('b', 8080)}" in text
    assert f"~ ClusterLoadAssignment {cluster('a')}" in text
    assert "RouteConfiguration" not in text, "the route did not change and must not be listed"


async def test_ledger_show_of_an_old_version(bus, nats_server):
    """`ledger show V` below the head: the record and its changes, promptly and without noise."""
    a, b = await _setup_two_versions(bus)
    # Against a command that reads no ledger, run just before on the same (possibly busy) machine.
    started = time.monotonic()
    await run_cli(nats_server.url, "layout")
    baseline = time.monotonic() - started
    started = time.monotonic()
    shown = await cli(nats_server.url, "ledger", "show", str(a))
    elapsed = time.monotonic() - started
    # It used to leave its ledger subscription open, so closing the connection waited 5 s for a drain
    # and then printed a CancelledError traceback.
    assert elapsed - baseline < 4.0, f"xdsbus ledger show {a} took {elapsed:.1f}s, layout {baseline:.1f}s"
    (rec,) = [r for r in await records(bus) if r.version == a]
    assert (shown["version"], shown["parent"], shown["digest"]) == (a, rec.parent, rec.digest)
    assert shown["last_seq"] == a and shown["first_seq"] == rec.parent + 1
    # Its change list is exactly the difference to its parent.
    now = await resources_at(bus, a)
    then = await resources_at(bus, rec.parent) if rec.parent else {}
    changed = {(c["type_url"], c["name"], c["sha256"]) for c in shown["changes"]["changed"]}
    assert changed == {(k.type_url, k.name, sha) for k, sha in now.items() if then.get(k) != sha}
    assert shown["changes"].get("removed", []) == []

    shown = await cli(nats_server.url, "ledger", "show", str(a), "--resources")
    listed = {(r["type_url"].rsplit(".", 1)[-1], r["name"]) for r in shown["resource_list"]}
    assert ("Cluster", cluster("b", 8080)) in listed and ("Cluster", cluster("c")) not in listed
    assert len(shown["resource_list"]) == shown["resources"]
    rc, out, err = await run_cli(nats_server.url, "ledger", "show", str(b + 100))
    assert (rc, out) == (2, "")
    assert f"xdsbus: version {b + 100} is not in the ledger of scope 'default'" in err
    assert "hint: `xdsbus ledger log` lists the versions" in err


async def test_replay_at_a_time_reproduces_the_version_then_in_force(bus, nats_server):
    """`xdsbus replay --at TIME` folds the events stored at or before TIME: the version of that moment."""
    a, b = await _setup_two_versions(bus)
    stored_a = await bus.js.get_msg("XDSBUS_EVENTS", a)
    stored_next = await bus.js.get_msg("XDSBUS_EVENTS", a + 1)
    assert stored_a.time is not None and stored_next.time is not None
    assert stored_next.time > stored_a.time, (
        "events a and a+1 share a timestamp; the test cannot tell them apart"
    )
    shown_a = await cli(nats_server.url, "ledger", "show", str(a))
    # A moment just after event a was stored (the stored time has nanoseconds; datetime has microseconds).
    just_after_a = stored_a.time + datetime.timedelta(microseconds=1)
    assert just_after_a < stored_next.time
    replayed = await cli(nats_server.url, "replay", "--at", just_after_a.isoformat())
    assert replayed["seq"] == a
    assert replayed["digest"] == shown_a["digest"]
    # After the last event, the replay is the head.
    shown_b = await cli(nats_server.url, "ledger", "show", str(b))
    replayed = await cli(nats_server.url, "replay", "--at", "2100-01-01T00:00:00")
    assert replayed["seq"] == b
    assert replayed["digest"] == shown_b["digest"]


CA = TestCA()


def tls_secret(name: str, pair: KeyPair) -> dict[str, Any]:
    data = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


async def test_replay_reads_the_local_stacks_key_file(bus, nats_server, tmp_path: Path):
    """`xdsbus replay` run where `xdsbus up` keeps its key file (.data/secret.key) opens the sealed
    Secrets as the builder did: the TLS host is rebuilt, the digest is the ledger's."""
    key = os.environ["XDSBUS_SECRET_KEY"]
    src = ScriptedSource(bus)
    src.secret_box = SecretBox.from_env()
    async with running_builder(bus, secret_box=src.secret_box):
        await src.put(service("a"))
        await src.put(tls_secret("cert", CA.issue("shop.example.com")))
        tls_ingress = ingress("web", "shop.example.com", "a")
        tls_ingress["spec"]["tls"] = [{"hosts": ["shop.example.com"], "secretName": "cert"}]
        await src.put(tls_ingress)
        version = (await wait_for_caught_up(bus)).version
    shown = await cli(nats_server.url, "ledger", "show", str(version))
    assert shown["resources"] > 4, "the TLS host was not served live"
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDSBUS_SECRET_KEY")}
    (tmp_path / LOCAL_KEY_FILE).parent.mkdir(parents=True)
    (tmp_path / LOCAL_KEY_FILE).write_text(key + "\n")
    replayed = await cli(nats_server.url, "replay", "--seq", str(version), cwd=tmp_path, env=env)
    assert replayed["digest"] == shown["digest"]
    # Without any key the Secret cannot be opened: the replay differs (and says nothing is wrong).
    (tmp_path / LOCAL_KEY_FILE).unlink()
    keyless = await cli(nats_server.url, "replay", "--seq", str(version), cwd=tmp_path, env=env)
    assert keyless["digest"] != shown["digest"]
    assert not (tmp_path / LOCAL_KEY_FILE).exists(), "replay made up a key of its own"
