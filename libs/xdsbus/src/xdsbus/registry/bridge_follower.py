"""Following McpBridge (and the system namespace's Secrets) from the event log.

Like the builder, it reads source state as the newest checkpoint plus the events after it, never the raw
log alone (docs/design.md §4): the McpBridge may have aged out of the log long ago. It takes McpBridge
and the system namespace's Secrets from the checkpoint's folded state, then a JetStream ordered consumer
reads `xdsbus.events.*.*.McpBridge` and `xdsbus.events.*.*.Secret` after the checkpoint's sequence (from
the start of the log where there is no checkpoint), whatever the source (`k8s/<cluster>` from
watch-k8s, `file/<name>` from watch-file), and folds them with the builder's fold code, so deletions and
resyncs mean the same here as there. Events missing between the checkpoint and the log's first message
are a gap: the follower then announces nothing (it is not ready) and keeps trying for a newer checkpoint.
Only the McpBridge `<system namespace>/default` counts (Higress); when several sources hold one, the first
source by name wins, as in the builder. The follower announces the registries of its types (e.g. nacos,
nacos2, nacos3) once it has caught up with the log, and again whenever they (or the Secrets they name as
`authSecretName`) change.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from nats.errors import Error as NatsError
from nats.js import api

from xdsbus.backoff import Backoff
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, MalformedEvent, Op, decode
from xdsbus.fold.folding import BatchResult, fold_stored
from xdsbus.fold.state import FoldState, StoredObject
from xdsbus.ledger import checkpoints
from xdsbus.model.mcpbridge import MCPBRIDGE_KIND, RegistryConfig
from xdsbus.model.mcpbridge_registries import bridge_registries, winning_source
from xdsbus.secretbox import SecretBox, SecretKeyError, is_sealed

log = logging.getLogger(__name__)

SECRET_KIND = "Secret"
DEFAULT_SYSTEM_NAMESPACE = "higress-system"
BRIDGE_NAME = "default"
# Without a message for this long the follower counts as caught up (a log with no McpBridge at all).
IDLE_TIMEOUT = 0.5
# The builder scope whose checkpoints the follower starts from. Every scope's builder folds the whole
# log, so any scope's checkpoint holds the same McpBridge and Secrets; `default` is the one every
# deployment runs (a builder's `XDSBUS_SCOPE` defaults to it).
CHECKPOINT_SCOPE = "default"
KINDS = (MCPBRIDGE_KIND, SECRET_KIND)


class LogGap(Exception):
    """Events after the state the follower holds are no longer in the log."""


class FoldedCredentials:
    """`Credentials` from the system namespace's Secrets as folded from the log (sealed bodies opened
    with the process's SecretBox). A Secret held by several sources is read from the source of the
    McpBridge in use, else from the first source by name."""

    def __init__(self, follower: BridgeFollower, secret_box: SecretBox | None) -> None:
        self._follower = follower
        self._secret_box = secret_box
        self._opened: dict[tuple[str, str], tuple[str, dict[str, Any] | None]] = {}
        self._warned: set[str] = set()

    def get(self, secret_name: str, key: str) -> str | None:
        """The value of `key` in Secret `<system namespace>/<secret_name>`, or None."""
        found = self._stored(secret_name)
        if found is None:
            return None
        source, stored = found
        secret = self._open(source, secret_name, stored)
        if secret is None:
            return None
        return _secret_value(secret, key)

    def revision(self, secret_name: str) -> str:
        """Changes whenever the Secret does ("" while it is missing): a registry using it is restarted,
        so rotated credentials take effect."""
        if not secret_name:
            return ""
        found = self._stored(secret_name)
        if found is None:
            return ""
        source, stored = found
        return f"{source}:{stored.rev}"

    def _stored(self, secret_name: str) -> tuple[str, StoredObject] | None:
        key = f"{self._follower.system_namespace}/{secret_name}"
        holders = {
            source: objects[key]
            for source, objects in self._follower.state.objects.get(SECRET_KIND, {}).items()
            if key in objects
        }
        if not holders:
            return None
        preferred = self._follower.bridge_source()
        source = preferred if preferred is not None and preferred in holders else min(holders)
        return source, holders[source]

    def _open(self, source: str, secret_name: str, stored: StoredObject) -> dict[str, Any] | None:
        cached = self._opened.get((source, secret_name))
        if cached is not None and cached[0] == stored.rev:
            return cached[1]
        body: Any = stored.value()
        if is_sealed(body):
            if self._secret_box is None:
                self._warn(secret_name, "no secret key is configured to open it")
                return None
            try:
                key = f"{self._follower.system_namespace}/{secret_name}"
                body = self._secret_box.open(body, source=source, kind=SECRET_KIND, key=key)
            except SecretKeyError as exc:
                self._warn(secret_name, str(exc))
                return None
        secret = body if isinstance(body, dict) else None
        self._opened[(source, secret_name)] = (stored.rev, secret)
        return secret

    def _warn(self, secret_name: str, reason: str) -> None:
        if secret_name not in self._warned:
            self._warned.add(secret_name)
            log.warning(
                "Secret %s/%s cannot be read: %s", self._follower.system_namespace, secret_name, reason
            )


def _secret_value(secret: Mapping[str, Any], key: str) -> str | None:
    """`stringData[key]` (manifests), else `data[key]` base64-decoded (the API's form)."""
    plain = secret.get("stringData")
    if isinstance(plain, Mapping) and isinstance(plain.get(key), str):
        return str(plain[key])
    data = secret.get("data")
    encoded = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, ValueError):
        log.warning("Secret key %s is not base64 text", key)
        return None


class BridgeFollower:
    """Follows McpBridge and Secrets; `desired()` is the registries of `types` to run."""

    def __init__(
        self,
        bus: Bus,
        types: Iterable[str],
        *,
        system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
        secret_box: SecretBox | None = None,
        checkpoint_scope: str = CHECKPOINT_SCOPE,
    ) -> None:
        self.bus = bus
        self.checkpoint_scope = checkpoint_scope
        self.types = frozenset(types)
        self.system_namespace = system_namespace
        self.bridge_key = f"{system_namespace}/{BRIDGE_NAME}"
        self.state = FoldState()
        self.credentials = FoldedCredentials(self, secret_box)
        # Set once the log has been read up to its end at least once.
        self.ready = asyncio.Event()
        # Bumped whenever desired() or the revisions of the Secrets it names change.
        self.generation = 0
        # Whether any McpBridge event at all was seen: without one the log says nothing about which
        # registries exist (their McpBridge may have aged out of the log), and nothing stale is cleared.
        self.evidence = False
        # Set while events after `state.seq` are missing from the log (and no newer checkpoint covers
        # them): nothing is announced and `ready` is clear, so registries are neither started nor stopped
        # on an incomplete state.
        self.gap = False
        self._changed = asyncio.Event()
        self._announced: tuple[dict[str, RegistryConfig], dict[str, str]] | None = None

    # -- reading --------------------------------------------------------------------------------

    def bridge_source(self) -> str | None:
        """The source whose McpBridge is used."""
        holders = self.state.objects.get(MCPBRIDGE_KIND, {})
        return winning_source(source for source, objects in holders.items() if self.bridge_key in objects)

    def desired(self) -> dict[str, RegistryConfig]:
        """The registries of this follower's types, by `type/name`, as the McpBridge in use says."""
        source = self.bridge_source()
        if source is None:
            return {}
        body = self.state.objects[MCPBRIDGE_KIND][source][self.bridge_key].value()
        configs = bridge_registries(body).configs
        return {key: config for key, config in configs.items() if config.type in self.types}

    async def wait_changed(self, generation: int) -> None:
        """Return once `self.generation` is no longer `generation`."""
        while self.generation == generation:
            await self._changed.wait()

    # -- following ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log until `stop` is set; reconnects resume after the last folded event."""
        backoff = Backoff(base=0.2, cap=5.0)
        while not stop.is_set():
            try:
                await self._follow(stop)
            except (NatsError, TimeoutError, LogGap) as exc:
                delay = backoff.next_delay()
                log.warning("following McpBridge failed (%s); resuming in %.1fs", exc, delay)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    pass

    async def _follow(self, stop: asyncio.Event) -> None:
        if self.state.seq == 0 or self.gap:
            await self._restore()
        await self._check_gap()
        config = api.ConsumerConfig(
            filter_subjects=[
                f"{EVENTS_SUBJECT_PREFIX}.*.*.{MCPBRIDGE_KIND}",
                f"{EVENTS_SUBJECT_PREFIX}.*.*.{SECRET_KIND}",
            ],
        )
        if self.state.seq:
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.state.seq + 1
        else:
            config.deliver_policy = api.DeliverPolicy.ALL
        sub = await self.bus.js.subscribe(
            f"{EVENTS_SUBJECT_PREFIX}.>", stream=EVENTS_STREAM, ordered_consumer=True, config=config
        )
        stopping = asyncio.ensure_future(stop.wait())
        try:
            dirty = False
            if not self.ready.is_set():
                # Nothing to deliver at all (a fresh log): caught up now rather than after IDLE_TIMEOUT.
                info = await sub.consumer_info()
                if info.num_pending == 0 and not (info.delivered and info.delivered.stream_seq):
                    self._announce()
                    self.ready.set()
            while not stop.is_set():
                receiving = asyncio.ensure_future(sub.next_msg(timeout=IDLE_TIMEOUT))
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()  # stopping: a pending read takes nothing from the queue
                    break
                try:
                    msg = receiving.result()
                except TimeoutError:
                    caught_up = True
                else:
                    meta = msg.metadata
                    dirty |= await self._fold(meta.sequence.stream, msg.subject, msg.data)
                    caught_up = meta.num_pending == 0
                if caught_up and (dirty or not self.ready.is_set()):
                    self._announce()
                    dirty = False
                    self.ready.set()
        finally:
            stopping.cancel()
            try:
                await sub.unsubscribe()
            except NatsError:
                pass

    async def _restore(self) -> None:
        """Start from the newest checkpoint when it is ahead of the state held, keeping only what the
        follower reads (the checkpoint holds every object of the log)."""
        checkpoint = await checkpoints.load_at_or_before(self.bus, self.checkpoint_scope)
        if checkpoint is None or checkpoint.state.seq <= self.state.seq:
            return
        full = checkpoint.state
        objects: dict[str, dict[str, dict[str, StoredObject]]] = {}
        for kind in KINDS:
            for source, by_key in full.objects.get(kind, {}).items():
                kept = {key: obj for key, obj in by_key.items() if self._wanted(kind, key)}
                if kept:
                    objects.setdefault(kind, {})[source] = kept
        self.state = FoldState(
            seq=full.seq,
            objects=objects,
            epochs={
                s: {k: e for k, e in by_kind.items() if k in KINDS} for s, by_kind in full.epochs.items()
            },
            syncs={s: {k: p for k, p in by_kind.items() if k in KINDS} for s, by_kind in full.syncs.items()},
        )
        # The checkpoint folds McpBridge events (objects, or a resync of the kind) the log may no
        # longer hold: what it says about McpBridge is as good as those events.
        self.evidence |= MCPBRIDGE_KIND in full.objects or any(
            MCPBRIDGE_KIND in by_kind for by_kind in full.epochs.values()
        )
        log.info("following McpBridge from checkpoint %s at %d", self.checkpoint_scope, full.seq)

    async def _check_gap(self) -> None:
        """Raise LogGap (and clear `ready`) when the events right after `state.seq` are gone."""
        if self.state.seq == 0:
            return  # from the log's start: whatever it still holds is all there is
        info = await self.bus.js.stream_info(EVENTS_STREAM)
        if info.state.first_seq <= self.state.seq + 1:
            self.gap = False
            return
        if not self.gap:
            log.error(
                "events %d to %d are no longer in %s and no checkpoint covers them: not following "
                "McpBridge until one does",
                self.state.seq + 1,
                info.state.first_seq - 1,
                EVENTS_STREAM,
            )
        self.gap = True
        self.ready.clear()
        raise LogGap(f"events after {self.state.seq} missing (log starts at {info.state.first_seq})")

    def _wanted(self, kind: str, key: str) -> bool:
        """Other McpBridges never count and other namespaces' Secrets are never read: not kept."""
        if kind == MCPBRIDGE_KIND:
            return key == self.bridge_key
        return key.startswith(f"{self.system_namespace}/")

    async def _fold(self, seq: int, subject: str, data: bytes) -> bool:
        """Fold one message; True when it may change what is announced."""
        try:
            event = decode(data)
        except MalformedEvent as exc:
            log.warning("event %d skipped: %s", seq, exc)
            self.state.seq = max(self.state.seq, seq)
            return False
        if event.kind == MCPBRIDGE_KIND:
            self.evidence = True
        if event.op in (Op.UPSERT, Op.DELETE) and not self._wanted(event.kind, event.key):
            self.state.seq = max(self.state.seq, seq)
            return False
        # The builder's fold, claim-checked bodies read from the Object Store.
        result = BatchResult()
        await fold_stored(self.bus, self.state, seq, subject, data, result)
        for rejection in result.rejected:
            log.warning("event %d skipped: %s", rejection.seq, rejection.reason)
        return bool(result.changed)

    def _announce(self) -> None:
        desired = self.desired()
        secrets = {
            config.auth_secret_name: self.credentials.revision(config.auth_secret_name)
            for config in desired.values()
            if config.auth_secret_name
        }
        announced = (desired, secrets)
        if announced == self._announced:
            return
        self._announced = announced
        log.info(
            "registries to run: %s",
            ", ".join(sorted(desired)) or "none",
            extra={"mcpbridge_source": self.bridge_source() or ""},
        )
        self.generation += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
