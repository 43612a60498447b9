"""`xdsbus replay --seq N | --at TIME [--dump DIR]`."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from nats.js import api

from xdsbus.bus import Bus
from xdsbus.cli.keys import keyring_or_none, reveal_keyring
from xdsbus.cli.output import emit
from xdsbus.cli.progress import progress
from xdsbus.contract import digest as digests
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import reader
from xdsbus.ledger.dump import write_dump
from xdsbus.ledger.store import fetch_body
from xdsbus.replay import replay_to, scope_table
from xdsbus.translate.settings import TranslatorSettings


async def seq_at(bus: Bus, when: datetime.datetime) -> int:
    """The last event sequence stored at or before `when`."""
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_TIME,
        opt_start_time=when,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=10.0,
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(f"{EVENTS_SUBJECT_PREFIX}.>", stream=EVENTS_STREAM, config=config)
    try:
        msgs = await sub.fetch(1, timeout=2)
        return int(msgs[0].metadata.sequence.stream) - 1
    except TimeoutError:
        return await last_event_seq(bus)
    finally:
        await sub.unsubscribe()


async def _digest_algorithm_at(bus: Bus, scope: str, seq: int) -> str:
    """The digest algorithm of the ledger version at `seq`, so the digests compare; the current one when
    no version sits there."""
    try:
        entry = await reader.find(bus, scope, seq)
    except reader.VersionNotFound:
        return digests.CURRENT
    return entry.record.digest_algorithm


async def replay(bus: Bus, args: argparse.Namespace) -> int:
    """Rebuild the configuration at a sequence or time and print its digest."""
    seq = args.seq if args.seq is not None else await seq_at(bus, args.at)
    head = await reader.head(bus, args.scope)
    settings = TranslatorSettings.parse(head.record.translator_version) if head else TranslatorSettings()
    secret_box = keyring_or_none()
    if args.reveal_secrets and secret_box is None:
        reveal_keyring()  # raises: revealing needs the key
    algorithm = await _digest_algorithm_at(bus, args.scope, seq)
    with progress(args, "replay: reading the checkpoint", "events") as bar:

        def report(stage: str, done: int, total: int) -> None:
            bar.update(done, total, f"replay: {stage}")

        result, translator = await replay_to(bus, args.scope, seq, settings, secret_box, algorithm, report)
    data: dict[str, Any] = {
        "seq": result.seq,
        "digest": result.digest,
        "digest_algorithm": result.digest_algorithm,
        "resources": result.resource_count,
        "checkpoint_seq": result.checkpoint_seq,
        "events_folded": result.events_folded,
        "rejected_events": len(result.rejected),
        "translator_version": settings.describe(),
    }
    if result.pinned_to:
        data |= {
            "pinned_to": result.pinned_to,
            "unpinned_digest": result.unpinned_digest,
            "unpinned_resources": result.unpinned_resources,
        }
    if args.dump:
        if result.pinned_to:
            # The pinned version's bodies, as the ledger holds them.
            bodies = [
                (key.type_url, await fetch_body(bus, sha, secret_box))
                for key, sha in sorted(result.pinned.items())
            ]
        else:
            bodies = [(key.type_url, res.body) for key, res in scope_table(translator, args.scope).items()]
        paths = write_dump(args.dump, bodies, reveal=args.reveal_secrets)
        data["files"] = [str(p) for p in paths]

    def text(d: dict[str, Any]) -> str:
        lines = [
            f"seq: {d['seq']}",
            f"digest: {d['digest']}",
            f"resources: {d['resources']}",
        ]
        if d.get("pinned_to"):
            lines += [
                f"pinned to version {d['pinned_to']}; unpinned: digest {d['unpinned_digest']}, "
                f"{d['unpinned_resources']} resources",
            ]
        lines += [
            f"from checkpoint at {d['checkpoint_seq']}, {d['events_folded']} events folded",
        ]
        lines += [f"wrote {p}" for p in d.get("files", [])]
        return "\n".join(lines) + "\n"

    emit(args, data, text)
    return 0
