"""Helpers for the builder tests: running builders (in-process or as `xdsbus-builder`), the `xdsbus` CLI,
reading the ledger as users see it, and checking its contract (docs/design.md §5)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from nats.js.errors import KeyNotFoundError

from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus, BusSettings, apply_layout, connect
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.ledger import reader
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_builder.builder import Builder, BuilderConfig
from xdsbus_dev.harness.processes import Service, eventually, tool

SCOPE = "default"
LEASE = f"builder.{SCOPE}"

# Small debounce so a test's bursts become versions quickly; small checkpoint interval so replays and
# restarts start from checkpoints.
FAST_FLAGS = ["--debounce-quiet", "0.02", "--debounce-max", "0.2", "--checkpoint-events", "20"]


def cluster(name: str, port: int = 80, namespace: str = "default") -> str:
    return f"outbound|{port}||{name}.{namespace}.svc.cluster.local"


async def connect_bus(url: str, lease_ttl: float = 6.0) -> Bus:
    """A bus whose leases bucket expires leases after `lease_ttl` (the layout is reshaped to it)."""
    settings = BusSettings(url=url, lease_ttl=lease_ttl)
    await apply_layout(url, settings.layout())
    return await connect(settings, name="test")


# -- builders -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_builder(
    bus: Bus, secret_box: SecretBox | None = None, **config: Any
) -> AsyncIterator[asyncio.Task[None]]:
    """An in-process Builder (opening Secrets with `secret_box`, if given); on exit it is stopped, and a
    crash inside it fails the test."""
    defaults: dict[str, Any] = {
        "instance_id": "in-process",
        "debounce_quiet": 0.02,
        "debounce_max": 0.2,
        "checkpoint_events": 20,
    }
    stop = asyncio.Event()
    task = asyncio.create_task(
        Builder(bus, BuilderConfig(**{**defaults, **config}), secret_box=secret_box).run(stop)
    )
    _IN_PROCESS.add(task)
    try:
        yield task
    finally:
        _IN_PROCESS.discard(task)
        stop.set()
        await asyncio.wait_for(task, 15)


_IN_PROCESS: set[asyncio.Task[None]] = set()


def _fail_if_a_builder_died() -> None:
    """Waiting for a version of a builder that crashed would only time out: fail at once, with its error."""
    for task in _IN_PROCESS:
        if task.done():
            error = task.exception() if not task.cancelled() else None
            raise RuntimeError(f"the in-process builder stopped: {error!r}") from error


def builder_process(url: str, log_dir: Path, instance_id: str, *flags: str) -> Service:
    """`xdsbus-builder` as a subprocess, logging at info level into log_dir/<instance_id>.log."""
    argv = [
        tool("xdsbus-builder"),
        "--nats-url",
        url,
        "--instance-id",
        instance_id,
        "--log-level",
        "info",
        *flags,
    ]
    return Service(argv, log_dir / f"{instance_id}.log")


_VERSION_LINE = re.compile(r"builder: version (\d+): ")


def versions_logged(output: str) -> list[int]:
    """The versions a builder says it published (its `version N: ...` log lines)."""
    return [int(v) for v in _VERSION_LINE.findall(output)]


async def lease_holder(bus: Bus) -> str | None:
    try:
        entry = await bus.leases.get(LEASE)
    except KeyNotFoundError:
        return None
    return (entry.value or b"").decode() or None


# -- the CLI --------------------------------------------------------------------------------------


async def run_cli(
    url: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[int, str, str]:
    """Run `xdsbus <args> --nats-url URL` (in `cwd`, with `env` if given): exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        tool("xdsbus"),
        *args,
        "--nats-url",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def cli(
    url: str, *args: str, as_json: bool = True, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Any:
    """Run `xdsbus <args> --json` (or without --json: the text); it must succeed without a traceback, and
    draw no progress bar into the pipe."""
    rc, out, err = await run_cli(url, *args, *(["--json"] if as_json else []), cwd=cwd, env=env)
    assert rc == 0, f"xdsbus {' '.join(args)} exited {rc}: {err}"
    assert "Traceback" not in err, f"xdsbus {' '.join(args)} printed a traceback:\n{err}"
    assert "\r" not in err, f"xdsbus {' '.join(args)} drew a progress bar into a pipe:\n{err!r}"
    return json.loads(out) if as_json else out


# -- the ledger -----------------------------------------------------------------------------------


async def records(bus: Bus) -> list[ledger_pb2.Version]:
    return [entry.record async for entry in reader.entries(bus, SCOPE)]


async def head_version(bus: Bus) -> int:
    head = await reader.head(bus, SCOPE)
    return head.record.version if head else 0


async def wait_for_version(bus: Bus, version: int, timeout: float = 20.0) -> ledger_pb2.Version:
    """Until the ledger head is `version` (or later)."""

    async def probe() -> ledger_pb2.Version | None:
        _fail_if_a_builder_died()
        head = await reader.head(bus, SCOPE)
        return head.record if head and head.record.version >= version else None

    return await eventually(probe, timeout=timeout, what=f"ledger version {version}")


async def wait_for_caught_up(bus: Bus, timeout: float = 20.0) -> ledger_pb2.Version:
    """Until the head version is the last event in the log (the caller makes sure that event changes
    some resource)."""
    return await wait_for_version(bus, await last_event_seq(bus), timeout)


async def resources_at(bus: Bus, version: int) -> dict[ResourceKey, str]:
    return await reader.resource_set(bus, SCOPE, version)


def table_of(translator: Translator) -> dict[ResourceKey, str]:
    return {key: res.sha256 for key, res in translator.table.items()}


async def translate_whole_log(bus: Bus, seq: int, settings: TranslatorSettings) -> Translator:
    """A fresh translation of every event up to `seq`: no checkpoint, no builder code."""
    state = FoldState()
    await fold_until(bus, state, seq)
    translator = Translator(settings)
    translator.full_build(state)
    return translator


def assert_chain(recs: list[ledger_pb2.Version]) -> None:
    """The ledger contract: versions strictly increase, each parent is the previous version, the event
    ranges are contiguous (first_seq = parent + 1, last_seq = version), and no version is empty."""
    assert recs, "the ledger is empty"
    versions = [r.version for r in recs]
    assert len(set(versions)) == len(versions), f"a version was published twice: {versions}"
    assert versions == sorted(versions), f"versions out of order: {versions}"
    previous = 0
    previous_digest = ""
    for r in recs:
        assert r.parent == previous, f"version {r.version} has parent {r.parent}, expected {previous}"
        assert r.first_seq == previous + 1, f"version {r.version}: first_seq {r.first_seq} after {previous}"
        assert r.last_seq == r.version
        assert r.changed_count + r.removed_count > 0, f"version {r.version} changes nothing"
        assert r.digest != previous_digest, f"version {r.version} has its parent's digest"
        previous, previous_digest = r.version, r.digest


# -- a busy source ---------------------------------------------------------------------------------

NAMES = ("alpha", "beta", "gamma", "delta", "eps")


async def random_change(src: ScriptedSource, rng: random.Random) -> None:
    """One event of a busy cluster: Services, their endpoints and Ingresses come, change and go."""
    name = rng.choice(NAMES)
    roll = rng.random()
    if roll < 0.3:
        await src.put(service(name, ports=rng.choice([(80,), (80, 8080), (9000,)])))
    elif roll < 0.65:
        addresses = sorted(
            {f"10.1.{NAMES.index(name)}.{rng.randint(1, 6)}" for _ in range(rng.randint(1, 3))}
        )
        await src.put(endpoint_slice(name, addresses))
    elif roll < 0.85:
        host = rng.choice(["shop.example.com", "api.example.com"])
        await src.put(ingress(f"ing-{name}", host, name, path=f"/{name}"))
    else:
        kind, key = rng.choice(
            [
                ("Service", f"default/{name}"),
                ("EndpointSlice", f"default/{name}-1"),
                ("Ingress", f"default/ing-{name}"),
            ]
        )
        await src.remove(kind, key)


# -- a marker: a change that always makes a version -----------------------------------------------


class Marker:
    """An endpoint change of a Service of its own source, so every `bump()` makes a new version and
    resyncs of the test's sources never touch it."""

    def __init__(self, bus: Bus) -> None:
        self.source = ScriptedSource(bus, "test/marker")
        self.count = 0

    async def setup(self) -> None:
        await self.source.put(service("marker"))
        await self.bump()

    async def bump(self) -> int:
        """Publish a new marker endpoint; returns its event sequence."""
        self.count += 1
        n = self.count
        await self.source.put(endpoint_slice("marker", [f"10.200.{n // 250}.{n % 250 + 1}"]))
        return await last_event_seq(self.source.bus)
