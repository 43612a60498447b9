"""State-of-the-world streams (StreamAggregatedResources and the per-type Stream* RPCs).

When a request is answered (docs/xds-protocol.md §1.12):
- the first request for a type on the stream, or one without a nonce: always;
- a request with an error_detail (NACK): never; the error is recorded, the rejected version is not
  resent, and the proxy gets the next version that changes what it subscribed to;
- a request whose nonce is not the last one sent for its type (stale): never (counted in
  pilot_xds_expired_nonce); the proxy repeats its subscription with its next ACK;
- an ACK: only when it subscribes to new names (or adds the wildcard), when a full-state type (CDS,
  LDS) loses names, or for the first EDS request after a CDS response (cluster warming).
On a new snapshot each watched type is pushed in order CDS, EDS, LDS, RDS, SDS if anything it
subscribes to changed: CDS and LDS with the complete set, the other types with the changed resources
only. A CDS push is followed by the ClusterLoadAssignments of the clusters it changed (changed or
not), so those clusters can finish warming. Responses draw on `Snapshot.servable`: a Secret that no
listener or cluster names is not sent, whoever asks for it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.message import DecodeError

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_edge.snapshot import FULL_STATE_TYPES, CachedResource, Snapshot, entry
from xdsbus_edge.sotw_ack import RepeatedAck, names_region, repeated_ack
from xdsbus_edge.stream import StreamRefused, XdsStream
from xdsbus_edge.subscriptions import WILDCARD, SotwWatch, shared_region

# Push decision: everything the watch subscribes to.
ALL = "all"


def _sha(resource: CachedResource | None) -> bytes | None:
    return resource.digest if resource is not None else None


def _named(resources: Mapping[str, CachedResource], names: Iterable[str]) -> Iterator[bytes]:
    """The response entries of those of `names` that `resources` holds, in name order."""
    for name in sorted(names):
        res = resources.get(name)
        if res is not None:
            yield from entry(res)


def _listed(resources: list[CachedResource]) -> Iterator[bytes]:
    for res in resources:
        yield from entry(res)


class SotwStream(XdsStream):
    mode = "sotw"
    watches: dict[str, SotwWatch]  # type: ignore[assignment]
    # The bytes of the request being handled, when it came as bytes and was parsed in full.
    _raw: bytes | None = None

    def decode(self, request: Any) -> Any:
        """A request as gRPC delivers it (bytes): a RepeatedAck when it only acknowledges the latest
        response and repeats the subscription (sotw_ack.py), else the parsed DiscoveryRequest."""
        self._raw = None
        if not isinstance(request, bytes):
            return request
        if self.watches:
            ack = repeated_ack(request, self.watches.values(), self.fixed_type)
            if ack is not None:
                return ack
        try:
            parsed = discovery_pb2.DiscoveryRequest.FromString(request)
        except DecodeError as exc:
            raise StreamRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request: {exc}", "bad_request"
            ) from None
        self._raw = request
        return parsed

    def _request_bytes(self, request: Any) -> int:
        # An ACK that keeps the subscription reserves nothing, as one naming as many resources as are
        # subscribed always did (XdsStream._request_bytes).
        return 0 if isinstance(request, RepeatedAck) else super()._request_bytes(request)

    async def handle_request(self, request: discovery_pb2.DiscoveryRequest | RepeatedAck) -> None:
        if isinstance(request, RepeatedAck):
            acked = self.watches[request.type_url]
            self.record_ack(acked, request.response_nonce, request.version_info)
            if acked.always_respond:
                await self.respond(acked, ALL)
            return
        type_url = self.type_of(request.type_url)
        watch = self.watches.get(type_url)
        nonce = request.response_nonce
        if request.HasField("error_detail"):
            self.record_nack(watch, type_url, nonce, request.error_detail.message)
            if watch is not None and request.version_info:
                # A NACK carries the last version the proxy accepted (its ACK may have been stale).
                watch.version_acked = request.version_info
            return
        if watch is None or not nonce:
            if watch is None:
                watch = self.watches[type_url] = SotwWatch(type_url)
            watch.update(request.resource_names)
            self._keep_names_region(watch, request)
            await self.respond(watch, ALL)
            return
        if nonce != watch.nonce_sent:
            self.registry.expired_nonce(self, type_url)
            if watch.version_of(nonce) is not None:
                watch.acked(nonce, request.version_info)  # bookkeeping only: it is still not answered
            return
        self.record_ack(watch, nonce, request.version_info)
        change = watch.update(request.resource_names)
        self._keep_names_region(watch, request)
        if change.grew or watch.always_respond or (type_url in FULL_STATE_TYPES and change.shrank):
            await self.respond(watch, ALL)

    def _keep_names_region(self, watch: SotwWatch, request: discovery_pb2.DiscoveryRequest) -> None:
        """The request's names are the watch's subscription now: keep their bytes, so the ACKs that
        repeat them are recognized unparsed."""
        raw = self._raw
        region = names_region(raw, request) if raw is not None else None
        watch.names_region = shared_region(watch.names, region) if region is not None else None

    async def respond(
        self, watch: SotwWatch, what: str | list[CachedResource], changed: Iterable[str] | None = None
    ) -> None:
        """Send `what` (ALL subscribed resources, or these) of the stream's snapshot for one type;
        `changed` names the resources that changed since the proxy's last response (None: unknown)."""
        snap = self.snap
        assert snap is not None
        started = time.perf_counter()
        type_url = watch.type_url
        resources = snap.servable(type_url)
        # What identifies the response among this snapshot's (shared_responses.py).
        key: Hashable
        entries: Callable[[], Iterator[bytes]]
        if not isinstance(what, str):
            key, entries = tuple(r.name for r in what), functools.partial(_listed, what)
        elif watch.wildcard:
            # Every resource of the type (Secrets, where `servable` differs, are never wildcard).
            key, entries = WILDCARD, functools.partial(_named, resources, resources)
        else:
            # The interned subscription (subscriptions.intern_names): found by identity.
            key, entries = watch.names, functools.partial(_named, resources, watch.names)
        nonce, body = snap.responses.get(type_url, key, entries)
        watch.base = snap
        if type_url == ENDPOINT:
            watch.eds_answered()
        await self.write(watch, body, nonce, started)
        if type_url == CLUSTER:
            if changed is None:
                eds_names = None
            else:
                eds_names = {
                    r.eds_name for n in changed if (r := resources.get(n)) is not None and r.eds_name
                }
            eds = self.watches.get(ENDPOINT)
            if eds is not None:
                eds.eds_after_cds(eds_names)
            self.after_cds(
                lambda: (
                    eds_names
                    if eds_names is not None
                    else {r.eds_name for r in resources.values() if r.eds_name}
                )
            )

    def changes_for(
        self, watch: SotwWatch, snap: Snapshot
    ) -> tuple[str | list[CachedResource] | None, list[str] | None]:
        """What a push of `snap` must send for this watch (ALL, some resources, or None) and the names
        that changed (None: unknown, the proxy has nothing yet)."""
        base = watch.base
        if base is None:
            return ALL, None
        type_url = watch.type_url
        old, new = base.servable(type_url), snap.servable(type_url)
        changed: list[str] = []
        if old is not new:
            if snap.predecessor == base.version:
                candidates: Any = snap.changed.get(type_url, ())
            elif watch.wildcard:
                candidates = set(old) | set(new)
            else:
                candidates = watch.names
            changed = [n for n in candidates if watch.interested(n) and _sha(old.get(n)) != _sha(new.get(n))]
        if watch.always_respond:
            # Clusters were sent: their endpoints follow, changed or not, so they can finish warming.
            if watch.follow is None:
                return ALL, changed
            names = set(changed)
            names.update(n for n in watch.follow if watch.interested(n))
            present = [new[n] for n in sorted(names) if n in new]
            return present or None, changed
        if not changed:
            return None, changed
        if type_url in FULL_STATE_TYPES:
            return ALL, changed
        # Other types carry only what changed; a removal alone needs no response (the parent resource
        # stops referring to it).
        present = [new[n] for n in sorted(changed) if n in new]
        return present or None, changed

    async def push(self, snap: Snapshot) -> None:
        self.snap = snap
        sent: set[str] = set()
        for watch in self.ordered_watches():
            assert isinstance(watch, SotwWatch)
            what, changed = self.changes_for(watch, snap)
            if what is None:
                watch.base = snap
                continue
            await self.respond(watch, what, changed)
            sent.add(watch.type_url)
        self.push_started(snap, sent)

    def cds_sent_elsewhere(self, eds_names: set[str]) -> None:
        eds = self.watches.get(ENDPOINT)
        if eds is not None:
            eds.eds_after_cds(eds_names)

    async def eds_after_cds(self) -> None:
        # SotW streams only flag their EDS watch (cds_sent_elsewhere); nothing is queued for them.
        return None
