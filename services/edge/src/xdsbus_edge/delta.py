"""Delta (incremental) streams (DeltaAggregatedResources and the per-type Delta* RPCs).

Each resource's version is its body's sha256, so a proxy that reconnects (to this edge or another)
with `initial_resource_versions` receives only what changed. Rules (docs/xds-protocol.md §1.7, §1.12):
- subscription changes are always applied, whatever the nonce (the nonce only correlates ACK/NACK);
- a response goes out only when something is to be sent or removed, and always for the first wildcard
  request (even empty: the proxy needs it to finish initializing);
- a name subscribed again is sent again; a subscribed name that does not exist is reported in
  `removed_resources` once and stays subscribed, so it is sent when it appears;
- unsubscribing a name that the wildcard still covers is answered (the resource, or its removal);
- a NACKed resource is not resent: the proxy gets it again only when it changes;
- clusters sent are followed by their ClusterLoadAssignments, whatever the proxy holds, so a cluster
  that changed can finish warming (Envoy does not always re-request them);
- a Secret that no listener or cluster names does not exist for the proxy (`Snapshot.servable`): it is
  reported removed, and sent once a listener or cluster names it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from envoy.service.discovery.v3 import discovery_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_edge.encoding import delta_response
from xdsbus_edge.snapshot import CachedResource, Snapshot
from xdsbus_edge.stream import EDS_AFTER_CDS, XdsStream
from xdsbus_edge.subscriptions import DeltaWatch, version_digest


class DeltaStream(XdsStream):
    mode = "delta"
    watches: dict[str, DeltaWatch]  # type: ignore[assignment]

    async def handle_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> None:
        type_url = self.type_of(request.type_url)
        watch = self.watches.get(type_url)
        first = watch is None
        if watch is None:
            watch = self.watches[type_url] = DeltaWatch(type_url)
        nonce = request.response_nonce
        if request.HasField("error_detail"):
            self.record_nack(watch, type_url, nonce, request.error_detail.message)
        elif nonce:
            version = watch.version_of(nonce)
            if version is not None:
                self.record_ack(watch, nonce, version)
        was_wildcard = watch.wildcard
        fresh = watch.subscribe(request.resource_names_subscribe, first=first)
        answer = watch.unsubscribe(request.resource_names_unsubscribe)
        candidates: set[str] | None
        if first:
            for name, version in request.initial_resource_versions.items():
                if watch.interested(name):
                    watch.known[name] = version_digest(version)
            candidates = None
        elif watch.wildcard and not was_wildcard:
            candidates = None
        else:
            candidates = fresh | answer
        if watch.forced and candidates is not None:
            candidates |= watch.forced
            watch.forced = set()
        assert self.snap is not None
        if candidates is not None and not candidates:
            return
        started = time.perf_counter()
        send, removed = self.diff(watch, self.snap, candidates)
        present = self.snap.servable(type_url)
        removed.extend(sorted(n for n in answer if n not in present and n not in removed))
        watch.base = self.snap
        if send or removed or (first and watch.wildcard):
            await self.send(watch, send, removed, started)
            if type_url == CLUSTER:
                await self.eds_after_cds()

    def diff(
        self, watch: DeltaWatch, snap: Snapshot, candidates: Iterable[str] | None
    ) -> tuple[list[CachedResource], list[str]]:
        """Resources to send and names to remove so the proxy matches `snap` for `candidates` (None:
        every name of interest); updates what the watch knows the proxy holds."""
        resources = snap.servable(watch.type_url)
        known = watch.known
        if candidates is None:
            candidates = (set(resources) if watch.wildcard else set(watch.names)) | set(known)
        send: list[CachedResource] = []
        removed: list[str] = []
        for name in sorted(candidates):
            if not watch.interested(name):
                continue
            current = resources.get(name)
            held = known.get(name)
            if current is not None:
                if held != current.digest:
                    send.append(current)
                    known[name] = current.digest
            elif held:
                removed.append(name)
                if name in watch.names:
                    known[name] = b""
                else:
                    del known[name]
            elif held is None and name in watch.names:
                # Subscribed, does not exist: say so once, keep the subscription.
                removed.append(name)
                known[name] = b""
        return send, removed

    async def send(
        self, watch: DeltaWatch, resources: list[CachedResource], removed: list[str], started: float
    ) -> None:
        assert self.snap is not None
        nonce = self.next_nonce()
        pieces: list[bytes] = []
        for res in resources:
            pieces += res.delta_entry()
        body = delta_response(self.snap.version_info, watch.type_url, nonce, pieces, removed)
        await self.write(watch, body, nonce, started)
        if watch.type_url == CLUSTER and resources:
            eds_names = {r.eds_name for r in resources if r.eds_name}
            self.force_eds(eds_names)
            self.after_cds(lambda: eds_names)

    def force_eds(self, eds_names: set[str]) -> bool:
        """Mark these ClusterLoadAssignments to be sent again; True if any is subscribed."""
        eds = self.watches.get(ENDPOINT)
        if eds is None:
            return False
        for name in eds_names:
            if eds.interested(name):
                eds.known.pop(name, None)
                eds.forced.add(name)
        return bool(eds.forced)

    def cds_sent_elsewhere(self, eds_names: set[str]) -> None:
        if self.force_eds(eds_names):
            self.queue.put_nowait(EDS_AFTER_CDS)

    async def eds_after_cds(self) -> None:
        eds = self.watches.get(ENDPOINT)
        if eds is None or not eds.forced or self.snap is None:
            return
        started = time.perf_counter()
        forced, eds.forced = eds.forced, set()
        send, removed = self.diff(eds, self.snap, forced)
        if send or removed:
            await self.send(eds, send, removed, started)

    async def push(self, snap: Snapshot) -> None:
        self.snap = snap
        pushed: set[str] = set()
        for watch in self.ordered_watches():
            assert isinstance(watch, DeltaWatch)
            started = time.perf_counter()
            base = watch.base
            candidates: set[str] | None
            if base is None:
                candidates = None
            elif base.servable(watch.type_url) is snap.servable(watch.type_url):
                candidates = set()
            elif snap.predecessor == base.version:
                candidates = set(snap.changed.get(watch.type_url, ()))
            else:
                candidates = None
            if candidates is not None and watch.forced:
                candidates |= watch.forced
            watch.forced = set()
            watch.base = snap
            if candidates is not None and not candidates:
                continue
            send, removed = self.diff(watch, snap, candidates)
            if send or removed:
                await self.send(watch, send, removed, started)
                pushed.add(watch.type_url)
        self.push_started(snap, pushed)
