"""The file source against a real nats-server: what a user sees in the event stream and in KV status."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from tests.watch_file.conftest import EventLog, StartWatcher, file_status, wait_status, write
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, Op
from xdsbus.secretbox import SecretBox, is_sealed
from xdsbus.watcher_report import WATCHER_KIND
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_file.manifests import KNOWN_KINDS

WEB = """
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  managedFields: [{manager: kubectl}]
spec:
  ports: [{port: 80}]
status:
  loadBalancer: {}
"""

API = """
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {ports: [{port: 8080}]}
"""


def service(name: str, port: int = 80, namespace: str = "default") -> str:
    return f"""
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {namespace}}}
spec: {{ports: [{{port: {port}}}]}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The watched directory; its name makes the source `file/config`."""
    d = tmp_path / "config"
    d.mkdir()
    return d


async def test_initial_resync(config: Path, events: EventLog, start_watcher: StartWatcher) -> None:
    write(config / "services.yaml", WEB + "---\n" + API)
    write(
        config / "gateway" / "classes.yml",
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: gateway.networking.k8s.io/v1
          kind: GatewayClass
          metadata: {name: higress}
        - apiVersion: example.com/v1
          kind: Widget
          metadata: {name: w1, namespace: tools}
        """,
    )
    write(
        config / "ingress.json",
        '{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "i"}}',
    )
    write(config / "notes.txt", "kind: Service\n")  # not a manifest file name
    write(config / ".hidden.yaml", service("hidden"))  # editors' and ConfigMap volumes' dot files
    write(config / "..data" / "x.yaml", service("hidden2"))

    await start_watcher(config)
    await events.wait_sync_end("Service")
    await events.wait_for(lambda log: len(log.of(Op.SYNC_END)) == len(KNOWN_KINDS) + 1, "every sync_end")
    log = events.events

    assert {e.source for e in log} == {"file/config"}
    begins = events.of(Op.SYNC_BEGIN)
    assert {e.kind for e in begins} == KNOWN_KINDS | {"Widget"}
    epoch = begins[0].epoch
    assert {e.epoch for e in log} == {epoch}
    # sync_begin for every kind, then the upserts, then sync_end for every kind.
    ops = [e.op for e in log]
    assert ops == sorted(ops, key=[Op.SYNC_BEGIN, Op.UPSERT, Op.SYNC_END].index)

    upserts = {(e.kind, e.key): e for e in events.of(Op.UPSERT)}
    assert set(upserts) == {
        ("Service", "shop/web"),
        ("Service", "default/api"),
        ("GatewayClass", "higress"),
        ("Widget", "tools/w1"),
        ("Ingress", "default/i"),
    }
    web = upserts[("Service", "shop/web")].body
    assert "status" not in web and "managedFields" not in web["metadata"]
    assert web["spec"] == {"ports": [{"port": 80}]}
    assert upserts[("Service", "default/api")].body["metadata"]["namespace"] == "default"

    sync_end = {e.kind: e.body["keys"] for e in events.of(Op.SYNC_END)}
    assert sync_end["Service"] == ["default/api", "shop/web"]
    assert sync_end["GatewayClass"] == ["higress"]
    assert sync_end["Widget"] == ["tools/w1"]
    assert sync_end["HTTPRoute"] == []


async def test_edit_remove_and_delete_file(
    config: Path, events: EventLog, start_watcher: StartWatcher
) -> None:
    write(config / "a.yaml", service("one") + service("two"))
    write(config / "b.yaml", service("three"))
    await start_watcher(config)
    await events.wait_sync_end()

    write(config / "a.yaml", service("one", port=81) + service("two"))
    await events.wait_for(
        lambda log: len(log.of(Op.UPSERT, "Service", "default/one")) == 2, "upsert of the edit"
    )
    edited = events.of(Op.UPSERT, "Service", "default/one")[-1]
    assert edited.body["spec"] == {"ports": [{"port": 81}]}
    assert edited.rev != events.of(Op.UPSERT, "Service", "default/one")[0].rev

    write(config / "a.yaml", service("one", port=81))
    await events.wait_for(
        lambda log: log.of(Op.DELETE, "Service", "default/two"), "delete of a removed object"
    )

    (config / "b.yaml").unlink()
    await events.wait_for(
        lambda log: log.of(Op.DELETE, "Service", "default/three"), "delete of a removed file"
    )
    assert [e.key for e in events.of(Op.DELETE)] == ["default/two", "default/three"]
    # Nothing unrelated was touched.
    assert len(events.of(Op.UPSERT, "Service", "default/one")) == 2


async def test_edit_then_undo_is_published(
    config: Path, events: EventLog, start_watcher: StartWatcher
) -> None:
    # An edit reverted within the stream's 2-minute duplicate window must not be dropped as a duplicate.
    write(config / "a.yaml", service("one", port=80))
    await start_watcher(config)
    await events.wait_sync_end()
    write(config / "a.yaml", service("one", port=81))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Service", "default/one")) == 2, "the edit")
    write(config / "a.yaml", service("one", port=80))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Service", "default/one")) == 3, "the undo")
    assert events.of(Op.UPSERT)[-1].body["spec"] == {"ports": [{"port": 80}]}


async def test_malformed_file_is_rejected_and_keeps_its_objects(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    write(config / "a.yaml", service("one") + service("two"))
    write(config / "b.yaml", service("three"))
    await start_watcher(config)
    await events.wait_sync_end()
    assert await file_status(bus, "config", "a.yaml") is None  # never rejected: no status key

    # Line 5 is mis-indented: the YAML cannot be parsed at all.
    write(config / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: one\n bad: indent\n")
    status = await wait_status(bus, "config", "a.yaml", "rejected")
    assert (status["kind"], status["key"]) == ("File", "a.yaml")
    assert status["reason"].startswith("a.yaml:5: invalid YAML:")
    assert status["errors"][0]["line"] == 5
    # `xdsbus status` reads the same bucket and lists the file next to the builder's verdicts.
    (listed,) = [
        s for s in await status_store.read_all(bus) if s.source == "file/config" and s.kind != WATCHER_KIND
    ]
    assert (listed.kind, listed.key, listed.state) == ("File", "a.yaml", "rejected")
    assert any(
        "a.yaml:5: invalid YAML" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )
    await events.read()
    assert events.of(Op.DELETE) == []

    # The other files still work.
    write(config / "b.yaml", service("three", port=99))
    await events.wait_for(
        lambda log: len(log.of(Op.UPSERT, "Service", "default/three")) == 2, "edit of b.yaml"
    )
    assert events.of(Op.DELETE) == []

    # Fixing the file publishes what it holds now, and deletes what it no longer holds.
    write(config / "a.yaml", service("one", port=82))
    await wait_status(bus, "config", "a.yaml", "accepted")
    await events.read()
    assert events.of(Op.UPSERT, "Service", "default/one")[-1].body["spec"] == {"ports": [{"port": 82}]}
    assert [e.key for e in events.of(Op.DELETE)] == ["default/two"]


async def test_first_resync_removes_its_legacy_status_entries(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    # Entries as watch-file wrote them before the contract's key scheme, for this source and another.
    def legacy(source: str, path: str) -> bytes:
        return (
            f'{{"errors": [{{"line": 5, "reason": "invalid YAML"}}], "key": "{path}", "kind": "File", '
            f'"object": "file:{path}", "reason": "{path}:5: invalid YAML", "source": "{source}", '
            '"state": "rejected"}'
        ).encode()

    await bus.status.put("source.file.config.a.yaml", legacy("file/config", "a.yaml"))
    await bus.status.put("source.file.other.a.yaml", legacy("file/other", "a.yaml"))
    write(config / "a.yaml", service("one"))
    await start_watcher(config)
    await events.wait_sync_end()

    entries = [(s.source, s.key) for s in await status_store.read_all(bus) if s.kind != WATCHER_KIND]
    assert entries == [("file/other", "a.yaml")]


async def test_startup_with_a_broken_file_defers_sync_end(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    write(config / "a.yaml", service("one"))
    write(config / "b.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: [unclosed\n")
    await start_watcher(config)
    status = await wait_status(bus, "config", "b.yaml", "rejected")
    assert status["reason"].startswith("b.yaml:")
    await events.read()
    assert [e.key for e in events.of(Op.UPSERT)] == ["default/one"]
    assert events.of(Op.SYNC_BEGIN) and events.of(Op.SYNC_END) == []

    # Edits keep flowing meanwhile.
    write(config / "a.yaml", service("one", port=81) + service("four"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/four"), "upsert during deferral")
    assert events.of(Op.SYNC_END) == []

    write(config / "b.yaml", service("two"))
    end = await events.wait_sync_end("Service")
    assert end.body["keys"] == ["default/four", "default/one", "default/two"]
    assert end.epoch == events.of(Op.SYNC_BEGIN, "Service")[0].epoch
    assert await file_status(bus, "config", "b.yaml") == {
        "kind": "File",
        "key": "b.yaml",
        "source": "file/config",
        "state": "accepted",
    }


async def test_invalid_document_is_rejected_alone(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    write(
        config / "a.yaml",
        service("one") + "---\napiVersion: v1\nkind: Service\nmetadata: {}\n" + service("two"),
    )
    await start_watcher(config)
    status = await wait_status(bus, "config", "a.yaml", "rejected")
    # The invalid document starts on line 7 (after the first document and its `---`).
    assert status["reason"] == "a.yaml:7: Service has no metadata.name"
    await events.wait_for(lambda log: len(log.of(Op.UPSERT)) == 2, "the valid documents")
    assert sorted(e.key for e in events.of(Op.UPSERT)) == ["default/one", "default/two"]
    # What the invalid document held is unknown: no resync end (hence no deletion) until it is fixed.
    assert events.of(Op.SYNC_END) == []

    write(config / "a.yaml", service("one") + service("three") + service("two"))
    end = await events.wait_sync_end("Service")
    assert end.body["keys"] == ["default/one", "default/three", "default/two"]


async def test_secret_body_is_sealed(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    write(
        config / "tls.yaml",
        """
        apiVersion: v1
        kind: Secret
        metadata: {name: tls, namespace: shop}
        type: kubernetes.io/tls
        stringData: {tls.key: PRIVATE-KEY-PLAINTEXT}
        """,
    )
    await start_watcher(config)
    await events.wait_sync_end("Secret")
    (upsert,) = events.of(Op.UPSERT, "Secret")
    assert upsert.key == "shop/tls"
    assert is_sealed(upsert.body)
    raw = await bus.js.get_msg(EVENTS_STREAM, events.events.index(upsert) + 1)
    assert raw.data is not None and b"PRIVATE-KEY-PLAINTEXT" not in raw.data
    assert SecretBox.from_env().open(upsert.body, source=upsert.source, kind="Secret", key=upsert.key) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "shop"},
        "type": "kubernetes.io/tls",
        "stringData": {"tls.key": "PRIVATE-KEY-PLAINTEXT"},
    }


async def test_duplicate_key_across_files(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    write(config / "a.yaml", service("web", port=1) + service("other"))
    write(config / "b.yaml", service("web", port=2))
    await start_watcher(config)
    await events.wait_sync_end()
    (upsert,) = events.of(Op.UPSERT, "Service", "default/web")
    assert upsert.body["spec"] == {"ports": [{"port": 1}]}  # a.yaml sorts first
    status = await wait_status(bus, "config", "b.yaml", "rejected")
    assert "Service default/web is also defined in a.yaml:2" in status["reason"]
    assert status["reason"].startswith("b.yaml:2:")
    assert await file_status(bus, "config", "a.yaml") is None

    # Once a.yaml no longer defines it, b.yaml's definition takes over: an upsert, not a delete.
    write(config / "a.yaml", service("other"))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Service", "default/web")) == 2, "b.yaml's web")
    assert events.of(Op.UPSERT, "Service", "default/web")[-1].body["spec"] == {"ports": [{"port": 2}]}
    await wait_status(bus, "config", "b.yaml", "accepted")
    await events.read()
    assert events.of(Op.DELETE) == []


async def test_oversized_object_is_rejected_alone(
    config: Path, events: EventLog, start_watcher: StartWatcher, bus: Bus
) -> None:
    big = "x" * (600 * 1024)
    write(
        config / "big.yaml",
        f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big}}\ndata: {{blob: {big}}}\n",
    )
    write(config / "small.yaml", service("one"))
    await start_watcher(config)
    status = await wait_status(bus, "config", "big.yaml", "rejected")
    assert "ConfigMap default/big is too large" in status["reason"]
    await events.wait_sync_end("ConfigMap")
    assert events.of(Op.UPSERT, "ConfigMap") == []
    assert [e.key for e in events.of(Op.UPSERT)] == ["default/one"]

    write(config / "small.yaml", service("one", port=81))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT)) == 2, "edit next to the oversized object")

    write(
        config / "big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {blob: small}\n"
    )
    await events.wait_for(
        lambda log: log.of(Op.UPSERT, "ConfigMap", "default/big"), "the object once it fits"
    )


async def test_directory_missing_then_appearing(
    tmp_path: Path, events: EventLog, start_watcher: StartWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "config"
    await start_watcher(config)
    await eventually(
        lambda: _true(any("source failed" in r.getMessage() for r in caplog.records)),
        what="the watcher to report the missing directory",
    )
    assert await events.read() == []

    write(config / "a.yaml", service("one"))
    end = await events.wait_sync_end()
    assert end.body["keys"] == ["default/one"]


async def test_directory_vanishing_deletes_nothing(
    config: Path,
    tmp_path: Path,
    events: EventLog,
    start_watcher: StartWatcher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    write(config / "a.yaml", service("one"))
    await start_watcher(config)
    await events.wait_sync_end()

    moved = tmp_path / "elsewhere"
    shutil.move(config, moved)
    await eventually(
        lambda: _true(any("source failed" in r.getMessage() for r in caplog.records)),
        what="the watcher to notice the directory is gone",
    )
    shutil.move(moved, config)
    await events.wait_sync_end(count=2)  # a fresh resync once it is back
    assert events.of(Op.DELETE) == []


async def test_restart_republishes_what_it_holds(
    config: Path, events: EventLog, start_watcher: StartWatcher
) -> None:
    # Message ids name publish attempts (docs/design.md §4): a restarted watcher's resync is stored even
    # within the duplicate window (the fold ignores what it already holds), so nothing it says is lost.
    write(config / "a.yaml", service("one") + service("two"))
    write(config / "b.yaml", WEB)
    first = await start_watcher(config)
    await events.wait_sync_end()
    upserts = len(events.of(Op.UPSERT))
    assert upserts == 3
    await first.stop()

    await start_watcher(config)
    second_end = await events.wait_sync_end(count=2)
    assert second_end.epoch != events.of(Op.SYNC_END, "Service")[0].epoch
    assert second_end.body["keys"] == ["default/one", "default/two", "shop/web"]
    again = events.of(Op.UPSERT)[upserts:]
    assert [(e.key, e.rev, e.body) for e in again] == [
        (e.key, e.rev, e.body) for e in events.of(Op.UPSERT)[:upserts]
    ]


async def _true(value: bool) -> bool:
    return value
