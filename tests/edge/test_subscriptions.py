"""subscriptions.py on its own: legacy wildcard, named subscriptions, nonce history and ACK/NACK
state (docs/xds-protocol.md §1.3, §1.5, §1.7)."""

from __future__ import annotations

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_edge.subscriptions import DeltaWatch, SotwWatch, shared_region


def test_sotw_legacy_wildcard_until_a_name_is_sent():
    watch = SotwWatch(CLUSTER)
    change = watch.update([])
    assert (watch.wildcard, watch.explicit, change.grew, change.shrank) == (True, False, True, False)
    change = watch.update(["*", "a"])
    assert (watch.wildcard, watch.names, change.added, change.grew) == (True, {"a"}, {"a"}, True)
    change = watch.update(["a"])
    assert (watch.wildcard, change.wildcard_removed, change.shrank, change.grew) == (False, True, True, False)
    change = watch.update([])  # after a name, empty means nothing
    assert (watch.wildcard, watch.names, change.removed) == (False, set(), {"a"})
    assert watch.debug()["subscribed"] == [] and not watch.debug()["legacy_wildcard"]


def test_sotw_same_names_change_nothing():
    watch = SotwWatch(ENDPOINT)
    watch.update(["a", "b"])
    change = watch.update(["b", "a"])
    assert not change.grew and not change.shrank


def test_sotw_eds_after_cds_collects_names_until_answered():
    watch = SotwWatch(ENDPOINT)
    assert (watch.always_respond, watch.follow) == (False, set())
    watch.eds_after_cds({"a"})
    watch.eds_after_cds({"b"})
    assert (watch.always_respond, watch.follow) == (True, {"a", "b"})
    watch.eds_after_cds(None)  # every cluster went out
    watch.eds_after_cds({"c"})
    assert watch.follow is None
    watch.eds_answered()
    assert (watch.always_respond, watch.follow) == (False, set())


def test_delta_legacy_wildcard_only_on_the_first_request():
    watch = DeltaWatch(CLUSTER)
    assert watch.subscribe([], first=True) == set() and watch.wildcard
    later = DeltaWatch(CLUSTER)
    later.subscribe([], first=False)
    assert not later.wildcard


def test_delta_subscribe_returns_names_to_send_even_if_held():
    watch = DeltaWatch(ENDPOINT)
    watch.subscribe(["a"], first=True)
    watch.known["a"] = "sha-a"
    assert watch.subscribe(["a", "*"], first=False) == {"a"}  # the client may have forgotten it
    assert "a" not in watch.known and watch.wildcard and watch.explicit


def test_delta_unsubscribe():
    watch = DeltaWatch(CLUSTER)
    watch.subscribe(["*", "a", "b"], first=True)
    watch.known.update(a="1", b="2", c="3")
    # Still covered by the wildcard: must be answered (resent or reported removed).
    assert watch.unsubscribe(["a", "never-subscribed"]) == {"a"}
    assert watch.names == {"b"} and "a" not in watch.known
    # Dropping the wildcard forgets what only the wildcard covered; no answer needed.
    assert watch.unsubscribe(["*"]) == set()
    assert (watch.wildcard, watch.known) == (False, {"b": "2"})
    assert watch.unsubscribe(["b"]) == set() and watch.names == set()
    assert watch.interested("b") is False


def test_nonce_history_maps_late_replies_to_their_version():
    watch = SotwWatch(CLUSTER)
    for n in range(1, 21):
        watch.sent(str(n), f"v{n}")
    assert (watch.nonce_sent, watch.version_sent, watch.responses) == ("20", "v20", 20)
    assert watch.version_of("20") == "v20" and watch.version_of("5") == "v5"
    assert watch.version_of("4") is None  # older than the 16 remembered
    assert watch.version_of("nope") is None


def test_ack_and_nack_state():
    watch = DeltaWatch(ENDPOINT)
    watch.sent("1", "100")
    watch.acked("1", "100")
    watch.sent("2", "101")
    watch.nacked("101", "bad endpoint")
    debug = watch.debug()
    assert (debug["sent"], debug["acked"], debug["nonce_acked"]) == ("101", "100", "1")
    assert (debug["nacked"], debug["last_error"], debug["known"]) == ("101", "bad endpoint", 0)
    assert debug["nacked_at"] is not None and debug["acked_at"] is not None


def test_streams_with_the_same_subscription_share_its_names_and_their_bytes():
    # Names no other test subscribes to: what is shared lives as long as some stream holds it.
    a, b, c = "shared-a", "shared-b", "shared-c"
    one, other, third = SotwWatch(ENDPOINT), SotwWatch(ENDPOINT), SotwWatch(ENDPOINT)
    one.update([b, a])
    other.update([a, b])
    third.update([a, c])
    assert one.names is other.names and one.names == {a, b} and third.names is not one.names
    first = b"".join(b"\x1a\x08" + n.encode() for n in (a, b))
    again = bytes(bytearray(first))  # equal, another object
    assert shared_region(one.names, first) is first
    assert shared_region(other.names, again) is first
    assert shared_region(other.names, b"".join(b"\x1a\x08" + n.encode() for n in (b, a))) is not first
