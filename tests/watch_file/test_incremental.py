"""watch-file publishes what a changed file changed, among many files, and everything again at a new term."""

from __future__ import annotations

from pathlib import Path

from tests.watch_file.conftest import EventLog, StartWatcher, write
from tests.watch_file.test_file_watcher import service
from xdsbus.bus import Bus
from xdsbus.events import Op

FILES = 40
PER_FILE = 10


def _file(i: int, ports: dict[int, int] | None = None) -> str:
    ports = ports if ports is not None else {j: 80 for j in range(PER_FILE)}
    return "".join(service(f"s{i}-{j}", port=port) for j, port in ports.items())


async def test_a_changed_file_publishes_only_what_it_changed(
    tmp_path: Path, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    config = tmp_path / "config"
    for i in range(FILES):
        write(config / f"f{i:02d}.yaml", _file(i))
    run = await start_watcher(config, instance_id="pod-a", lease_ttl=1.5)
    await events.wait_sync_end()
    assert len(events.of(Op.UPSERT, "Service")) == FILES * PER_FILE
    resynced = len(await events.read())

    # One file: s7-1 changes its port, s7-2 vanishes, s7-99 appears; a second file is removed whole.
    ports = {j: 80 for j in range(PER_FILE) if j != 2}
    ports[1], ports[99] = 81, 80
    write(config / "f07.yaml", _file(7, ports))
    (config / "f08.yaml").unlink()
    await events.wait_for(
        lambda log: len(log.of(Op.DELETE, "Service")) == 1 + PER_FILE, "the deletions of f07 and f08"
    )
    await events.wait_for(lambda log: len(log.events) >= resynced + 2 + 1 + PER_FILE, "f07's upserts")
    changed = events.events[resynced:]
    assert sorted((e.op.value, e.key) for e in changed if e.op is Op.UPSERT) == [
        ("upsert", "default/s7-1"),
        ("upsert", "default/s7-99"),
    ]
    assert sorted(e.key for e in changed if e.op is Op.DELETE) == sorted(
        ["default/s7-2", *(f"default/s8-{j}" for j in range(PER_FILE))]
    )
    assert next(e for e in changed if e.key == "default/s7-1").body["spec"] == {"ports": [{"port": 81}]}

    # A new term (the lease taken and given back) starts with a full resync: everything again.
    await bus.leases.put(run.watcher.lease.name, b"pod-b")
    await bus.leases.delete(run.watcher.lease.name)
    end = await events.wait_sync_end(count=2)
    upserts = [e for e in events.of(Op.UPSERT, "Service") if e.term == end.term]
    assert len(upserts) == (FILES - 1) * PER_FILE
    assert sorted(end.body["keys"]) == sorted(e.key for e in upserts)
