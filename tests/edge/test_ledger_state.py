"""The edge's ledger state (xdsbus_edge/ledger_state.py): the served snapshot plus what a newer version
changes, with the version digest kept per bucket. Its digest must be the builder's for every resource
set it goes through, by both algorithms, whatever mix of served and pending resources that set is."""

from __future__ import annotations

import hashlib

from xdsbus.contract import digest as digests
from xdsbus.contract.resources import ResourceKey, pack_any
from xdsbus.contract.type_urls import ENDPOINT, ROUTE
from xdsbus_edge.ledger_state import LedgerState, key
from xdsbus_edge.snapshot import CachedResource, Snapshot, next_snapshot


def _body(name: str, generation: int) -> bytes:
    # Types whose bodies the edge does not look into (listeners and clusters are parsed for Secrets).
    return pack_any(ENDPOINT, f"{name}@{generation}".encode())


def _sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _switch(state: LedgerState, bodies: dict[ResourceKey, bytes], version: int) -> Snapshot:
    """Serve the state's newest version, as the follower does once every body is there."""
    changes = {
        k: None if d is None else CachedResource(k.type_url, k.name, d, bodies[k])
        for k, d in state.pending.items()
    }
    snap = next_snapshot(state.served, scope="s", version=version, digest="", changes=changes)
    state.adopt(snap)
    return snap


def _expected(bodies: dict[ResourceKey, bytes], algorithm: str) -> str:
    return digests.digest_of(algorithm, ((k.type_url, k.name, _sha(b)) for k, b in bodies.items()))


def test_digest_follows_the_set_through_loads_changes_and_switches() -> None:
    state = LedgerState()
    bodies = {key(t, f"r{i:03d}"): _body(f"{t}{i}", 0) for t in (ROUTE, ENDPOINT) for i in range(300)}
    state.reset({k: _sha(b) for k, b in bodies.items()})
    for algorithm in (digests.BUCKETS_4096_V1, digests.LINES_V1):
        assert state.hexdigest(algorithm) == _expected(bodies, algorithm)
    assert len(state.pending) == 600
    _switch(state, bodies, 1)
    assert not state.pending
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)

    # A version that changes, removes and adds: pending holds exactly what differs from the served one.
    changed, gone, added = key(ENDPOINT, "r007"), key(ROUTE, "r100"), key(ENDPOINT, "new")
    bodies[changed] = _body("changed", 1)
    del bodies[gone]
    bodies[added] = _body("added", 1)
    state.set(changed, bytes.fromhex(_sha(bodies[changed])))
    state.set(gone, None)
    state.set(added, bytes.fromhex(_sha(bodies[added])))
    # Set back to what is served: no longer pending.
    state.set(key(ROUTE, "r001"), bytes.fromhex(_sha(bodies[key(ROUTE, "r001")])))
    assert set(state.pending) == {changed, gone, added}
    for algorithm in (digests.BUCKETS_4096_V1, digests.LINES_V1):
        assert state.hexdigest(algorithm) == _expected(bodies, algorithm)
    snap = _switch(state, bodies, 2)
    assert snap.of(ENDPOINT)[changed.name].body == bodies[changed] and gone.name not in snap.of(ROUTE)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)

    # A reload of the whole set (after a gap): only what differs from the served snapshot is pending.
    bodies[key(ROUTE, "r200")] = _body("reloaded", 2)
    del bodies[key(ENDPOINT, "r201")]
    state.reset({k: _sha(b) for k, b in bodies.items()})
    assert set(state.pending) == {key(ROUTE, "r200"), key(ENDPOINT, "r201")}
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    _switch(state, bodies, 3)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)


def test_pending_holds_the_last_digest_set_per_key() -> None:
    state = LedgerState()
    a, b = key(ENDPOINT, "a"), key(ROUTE, "b")
    first, second = bytes(range(32)), bytes(range(1, 33))
    state.set(a, first)
    state.set(a, second)
    state.set(b, first)
    state.set(b, None)  # nothing served: a removal is no difference
    assert dict(state.pending) == {a: second}
    state.set(b, second)
    assert dict(state.pending) == {a: second, b: second}
    expected = digests.digest_of(
        digests.BUCKETS_4096_V1, [(ENDPOINT, "a", second.hex()), (ROUTE, "b", second.hex())]
    )
    assert state.hexdigest(digests.BUCKETS_4096_V1) == expected


def test_digest_of_a_load_with_more_keys_than_buckets() -> None:
    """A load's pending keys are grouped by counting sort (a version's few by a dict): same digests."""
    state = LedgerState()
    bodies = {key(ENDPOINT, f"e{i:05d}"): _body(f"e{i}", 0) for i in range(digests.BUCKETS + 500)}
    state.reset({k: _sha(b) for k, b in bodies.items()})
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    _switch(state, bodies, 1)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    for i in range(0, len(bodies), 2):
        bodies[key(ENDPOINT, f"e{i:05d}")] = _body(f"e{i}", 1)
    state.reset({k: _sha(b) for k, b in bodies.items()})
    assert len(state.pending) == (len(bodies) + 1) // 2
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    _switch(state, bodies, 2)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)


def test_a_served_version_stores_the_digests_of_what_it_serves_whatever_was_checked_before() -> None:
    """adopt stores the bucket digests hexdigest computed for the same pending keys; a check of keys
    that changed before the switch (a set, a discard, a reload) must not leave its digests behind."""
    state = LedgerState()
    bodies = {key(t, f"r{i:03d}"): _body(f"{t}{i}", 0) for t in (ROUTE, ENDPOINT) for i in range(300)}
    state.reset({k: _sha(b) for k, b in bodies.items()})
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    _switch(state, bodies, 1)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)

    # Checked, then one more key changed before the switch.
    first, later = key(ENDPOINT, "r005"), key(ROUTE, "r250")
    bodies[first] = _body("first", 1)
    state.set(first, bytes.fromhex(_sha(bodies[first])))
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
    bodies[later] = _body("later", 1)
    state.set(later, bytes.fromhex(_sha(bodies[later])))
    _switch(state, bodies, 2)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)

    # Checked, then a key set back to what is served before the switch.
    undone = key(ROUTE, "r017")
    state.set(undone, bytes.fromhex(_sha(_body("undone", 2))))
    state.set(first, None)
    del bodies[first]
    assert state.hexdigest(digests.BUCKETS_4096_V1) != _expected(bodies, digests.BUCKETS_4096_V1)
    state.set(undone, bytes.fromhex(_sha(bodies[undone])))
    _switch(state, bodies, 3)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)

    # Checked, then reloaded as a set of the same size that differs elsewhere before the switch.
    checked = dict(bodies)
    checked[key(ENDPOINT, "r100")] = _body("checked", 2)
    state.reset({k: _sha(b) for k, b in checked.items()})
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(checked, digests.BUCKETS_4096_V1)
    bodies[key(ROUTE, "r200")] = _body("reloaded", 2)
    state.reset({k: _sha(b) for k, b in bodies.items()})
    _switch(state, bodies, 4)
    assert state.hexdigest(digests.BUCKETS_4096_V1) == _expected(bodies, digests.BUCKETS_4096_V1)
