"""The fold and the translator are deterministic (docs/design.md §5): a version's content is a pure
function of the events up to its sequence, whatever the batching, restarts from checkpoints and redeliveries.

No NATS here: events go through the same path the builder uses (`fold_message` on encoded envelopes, then
`Translator.update` per batch and `ResourceTable.commit` per version) and are compared with a fresh
`full_build` of the state folded in one go, which is what `xdsbus replay` computes.
"""

from __future__ import annotations

import base64
import os
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.objects import endpoint_slice, ingress, service
from xdsbus.contract.resources import Changes, ResourceKey
from xdsbus.events import Event, Op, SyncEnd, decode, encode, subject_for
from xdsbus.fold.folding import BatchResult, fold_message
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.ledger import checkpoints
from xdsbus.secretbox import SecretBox, is_sealed
from xdsbus.translate.translator import Translator
from xdsbus.watcher import content_rev
from xdsbus_dev.harness.certs import KeyPair, TestCA

# Mostly one source, so objects meet (a Service and its slices count only within one source).
SOURCES = ("k8s/one", "k8s/one", "k8s/one", "k8s/two")
KEYS = ("default/a", "default/b")
OLD = "2025-06-01T00:00:00Z"


def _bad_port_service() -> dict[str, Any]:
    body = service("a")
    body["spec"]["ports"] = [{"port": "abc"}]
    return body


def _external_service() -> dict[str, Any]:
    body = service("b")
    body["spec"].update(type="ExternalName", externalName="b.example.com")
    return body


def _unlabelled_slice() -> dict[str, Any]:
    body = endpoint_slice("a", ["10.0.0.9"])
    body["metadata"]["labels"] = {}
    return body


def _not_ready_slice() -> dict[str, Any]:
    body = endpoint_slice("a", ["10.0.0.1", "10.0.0.2"])
    body["endpoints"][1]["conditions"]["ready"] = False
    return body


def _named_port_ingress(name: str, host: str, backend: str, port_name: str) -> dict[str, Any]:
    body = ingress(name, host, backend, path="/named")
    body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": port_name}
    return body


def _bad_host_ingress() -> dict[str, Any]:
    return ingress("bad", "*.*.example.com", "a")


def _tls_ingress() -> dict[str, Any]:
    body = ingress("s", "foo.com", "a", path="/secure", created=OLD)
    body["spec"]["tls"] = [{"hosts": ["foo.com"], "secretName": "cert"}]
    return body


# A few bodies per kind, chosen so objects interact: names do not always match the key, so two objects (of
# one or two sources) can claim the same hostname and the oldest must win (with other ports); Ingresses
# with named ports depend on the Service model; two Ingresses claim the same host and path; and some
# bodies are rejected by the translator.
BODIES: dict[str, list[dict[str, Any]]] = {
    "Service": [
        service("a"),
        service("a", ports=(80, 8080)),
        service("a", ports=(8080,), created=OLD),
        service("b", ports=(9090,)),
        _external_service(),
        _bad_port_service(),
        service("a", ports=(80, 80)),  # port declared twice: rejected
    ],
    "EndpointSlice": [
        endpoint_slice("a", ["10.0.0.1"]),
        _not_ready_slice(),
        endpoint_slice("a", ["10.0.1.1"], port=8080, suffix="2"),
        endpoint_slice("b", ["10.0.2.1"], port=9090),
        _unlabelled_slice(),
    ],
    "Ingress": [
        ingress("i", "foo.com", "a"),
        ingress("i", "foo.com", "b", path="/b", port=9090),
        ingress("j", "foo.com", "a", created=OLD, port=8080),  # same host and path as the first: older wins
        _named_port_ingress("n", "foo.com", "a", "http-8080"),
        _named_port_ingress("m", "", "b", "http-9090"),
        _bad_host_ingress(),
        _tls_ingress(),
    ],
}

# -- TLS: Secrets and Ingresses with spec.tls and annotations -------------------------------------------

# Made once per module: a CA and three leaf certificates (EC keys, milliseconds).
_CA = TestCA()
_CERT = _CA.issue("tls.com")
_CERT_ROTATED = _CA.issue("tls.com")
_OTHER = _CA.issue("foo.com")
# The builder's key; Secrets travel sealed with it, as watchers publish them.
BOX = SecretBox(os.urandom(32))
_FOREIGN_BOX = SecretBox(os.urandom(32))


def _secret(name: str, data: dict[str, bytes | str], type_: str = "kubernetes.io/tls") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": "default"},
        "data": {k: v if isinstance(v, str) else base64.b64encode(v).decode() for k, v in data.items()},
    }


def _tls(name: str, pair: KeyPair, ca: bytes | None = None) -> dict[str, Any]:
    data: dict[str, bytes | str] = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    if ca is not None:
        data["ca.crt"] = ca
    return _secret(name, data)


# Plain Secret bodies: valid ones (a rotation of "cert", a CA bundle under both of its names, a second
# certificate) and ones the translator rejects. Names do not follow the event keys, so two keys (or two
# sources) can provide the same SDS name.
SECRET_BODIES: list[dict[str, Any]] = [
    _tls("cert", _CERT),
    _tls("cert", _CERT_ROTATED, ca=_CA.cert_pem),
    _tls("cert2", _OTHER),
    _secret("cert-cacert", {"ca.crt": _CA.cert_pem}, type_="Opaque"),
    _tls("cert", KeyPair(_CERT.cert_pem, _OTHER.key_pem)),  # key of another certificate: rejected
    _secret("cert", {"tls.crt": "not base64!", "tls.key": "eA=="}),  # rejected
    _secret("cert2", {"tls.crt": b"not PEM", "tls.key": _OTHER.key_pem}),  # rejected
]
# For each object (a seal binds source, kind and key), each body sealed twice with the builder's key
# (another nonce: other bytes, same content), and once with another key (rejected). Sealed here, once, so
# that hypothesis replays identical examples.
SEALED: dict[tuple[str, str], list[list[dict[str, Any]]]] = {
    (source, key): [
        [box.seal(body, source=source, kind="Secret", key=key) for box in (BOX, BOX, _FOREIGN_BOX)]
        for body in SECRET_BODIES
    ]
    for source in sorted(set(SOURCES))
    for key in KEYS
}

N = "nginx.ingress.kubernetes.io/"
H = "higress.io/"
# Annotation values to draw from: mostly usable, some not (a warning, never a rejection).
ANNOTATIONS: dict[str, list[str]] = {
    N + "canary": ["true", "true", "false"],
    N + "canary-weight": ["30", "100", "-1"],
    N + "canary-by-header": ["x-canary", "bad header"],
    N + "ssl-redirect": ["true", "false", "maybe"],
    N + "force-ssl-redirect": ["true"],
    N + "rewrite-target": ["/", "/$1", "/(unclosed"],
    N + "use-regex": ["true"],
    N + "load-balance": ["random", "least_conn", "passthrough"],
    N + "upstream-hash-by": ["$request_uri", "$remote_addr", "nope"],
    N + "backend-protocol": ["HTTPS", "GRPC", "ftp"],
    N + "default-backend": ["b", "missing", "default/a"],
    N + "custom-http-errors": ["404,503", "42"],
    N + "whitelist-source-range": ["10.0.0.0/8, 1.2.3.4", "not-an-ip"],
    H + "request-header-control-add": ["x-a 1", "no-value"],
    H + "response-header-control-remove": ["server", "bad header"],
    N + "auth-tls-secret": ["cert", "cert", "cert-cacert", "elsewhere/cert"],
    N + "proxy-ssl-secret": ["cert2"],
    N + "tls-min-protocol-version": ["TLSv1.2", "SSLv3"],
}

# The annotations that make Ingresses meet (canaries, shared clusters, fallbacks, client certificates,
# redirects depending on TLS) are drawn more often.
# (key, value) pairs to draw from, one draw per annotation. The annotations that make Ingresses meet
# (canaries, shared clusters, fallbacks, client certificates, redirects depending on TLS) come more often.
ANNOTATION_ITEMS = [(key, value) for key, values in ANNOTATIONS.items() for value in values] + [
    (N + key, ANNOTATIONS[N + key][0])
    for key in ("canary", "load-balance", "default-backend", "auth-tls-secret", "ssl-redirect")
    for _ in range(2)
]
# Building blocks of the rules, so that an Ingress costs a handful of draws (generation dominates the
# run time of these properties).
_PATHS = [
    [(path, backend, port)] for path in ("/", "/api") for backend in ("a", "b") for port in (80, 8080)
] + [[("/", "a", 80), ("/api", "b", 8080)], [("/api", "a", 8080), ("/", "b", 80)]]
_RULE_HOSTS = [["tls.com"], ["foo.com"], [""], ["tls.com", "foo.com"], ["foo.com", ""]]
_SECRET_NAMES = ("cert", "cert", "cert2", "nope")


def _rule(host: str, paths: list[tuple[str, str, int]]) -> dict[str, Any]:
    return {
        "host": host,
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": "Prefix",
                    "backend": {"service": {"name": backend, "port": {"number": port}}},
                }
                for path, backend, port in paths
            ]
        },
    }


@st.composite
def annotated_ingresses(draw: st.DrawFn) -> dict[str, Any]:
    """An Ingress of one or two rules (hosts that meet the fixed bodies' and each other's), mostly with
    spec.tls (sometimes for a host it has no rule for), sometimes a default backend, and a few
    annotations."""
    body = ingress(draw(st.sampled_from(("t", "u", "c"))), "", "a", created=draw(st.sampled_from((OLD, ""))))
    hosts = draw(st.sampled_from(_RULE_HOSTS))
    body["spec"]["rules"] = [_rule(host, draw(st.sampled_from(_PATHS))) for host in hosts]
    tls_hosts = [h for h in hosts if h] or ["other.com"]
    choice = draw(st.integers(0, 5))
    if choice <= 2:  # its rule hosts, one certificate
        body["spec"]["tls"] = [{"hosts": tls_hosts, "secretName": draw(st.sampled_from(_SECRET_NAMES))}]
    elif choice == 3:  # a host without a rule, and a second certificate for the same host
        body["spec"]["tls"] = [
            {"hosts": [*tls_hosts, "other.com"], "secretName": "cert"},
            {"hosts": tls_hosts[:1], "secretName": "cert2"},
        ]
    if draw(st.integers(0, 4)) == 0:
        body["spec"]["defaultBackend"] = {"service": {"name": "b", "port": {"number": 9090}}}
    items = draw(
        st.lists(st.sampled_from(ANNOTATION_ITEMS), min_size=1, max_size=4, unique_by=lambda i: i[0])
    )
    body["metadata"]["annotations"] = dict(items)
    return body


KINDS = (*BODIES, "Secret")


# -- event generation -------------------------------------------------------------------------------


def _upsert(source: str, kind: str, key: str, body: Any, rev: str) -> Event:
    return Event(
        source=source, kind=kind, key=key, op=Op.UPSERT, rev=rev or content_rev(body), epoch=0, body=body
    )


@st.composite
def upserts(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS, sources: tuple[str, ...] = SOURCES) -> Event:
    kind = draw(st.sampled_from(kinds))
    source, key = draw(st.sampled_from(sources)), draw(st.sampled_from(KEYS))
    # Mostly a content hash (what sources without revisions send); sometimes an opaque revision, which
    # also gives "same body, different rev" and "same rev again" upserts.
    rev = draw(st.sampled_from(["", "", "r1", "r2"]))
    if kind == "Secret":
        # Mostly usable ones.
        index = draw(st.sampled_from((0, 0, 1, 1, 1, 2, 3, 3, *range(len(SECRET_BODIES)))))
        # The revision hashes the plain body (as watchers compute it), or is an opaque one of this
        # content (a source's resourceVersion: never the same for two contents, or resealing the same
        # events could legitimately fold otherwise). The body travels sealed, mostly with the builder's
        # key.
        rev = {"": content_rev(SECRET_BODIES[index]), "r1": f"r1-{index}", "r2": f"r2-{index}"}[rev]
        body = SEALED[source, key][index][draw(st.sampled_from((0, 0, 0, 1, 1, 1, 2)))]
    elif kind == "Ingress" and draw(st.integers(0, 2)):
        body = draw(annotated_ingresses())
    else:
        body = BODIES[kind][draw(st.integers(0, len(BODIES[kind]) - 1))]
    return _upsert(source, kind, key, body, rev)


@st.composite
def deletes(draw: st.DrawFn, kinds: tuple[str, ...] = KINDS, sources: tuple[str, ...] = SOURCES) -> Event:
    return Event(
        source=draw(st.sampled_from(sources)),
        kind=draw(st.sampled_from(kinds)),
        key=draw(st.sampled_from(KEYS)),
        op=Op.DELETE,
    )


# Resyncs mostly of one source and kind, so they overlap, go stale and straddle checkpoints.
SYNC_SOURCES = st.sampled_from(("k8s/one", "k8s/one", "k8s/two"))
SYNC_KINDS = st.sampled_from(("Service", "Service", "EndpointSlice", "Ingress", "Secret"))


@st.composite
def sync_begins(draw: st.DrawFn) -> Event:
    return Event(
        source=draw(SYNC_SOURCES),
        kind=draw(SYNC_KINDS),
        op=Op.SYNC_BEGIN,
        epoch=draw(st.integers(1, 3)),
    )


@st.composite
def sync_ends(draw: st.DrawFn) -> Event:
    parts = draw(st.integers(1, 2))
    return Event(
        source=draw(SYNC_SOURCES),
        kind=draw(SYNC_KINDS),
        op=Op.SYNC_END,
        epoch=draw(st.integers(1, 3)),
        body=SyncEnd(
            keys=sorted(draw(st.sets(st.sampled_from(KEYS)))),
            part=draw(st.integers(0, parts - 1)),
            parts=parts,
        ),
    )


# What is stored in the log: an encoded envelope, or (rarely) bytes that are no envelope at all.
Message = tuple[str, bytes]


def _message(event: Event) -> Message:
    # Round-trip through msgpack: a SyncEnd body arrives as a plain dict, as it does from the stream.
    return subject_for(event.source, event.kind), encode(event)


# TLS-heavy logs: one source, the Services of the fixed bodies, Secrets and annotated Ingresses coming
# and going, so that hosts meet their certificates (and lose them) within a few dozen events.
TLS_KINDS = ("Service", "Ingress", "Ingress", "Secret", "Secret")
TLS_SOURCES = ("k8s/one",)


@st.composite
def logs(draw: st.DrawFn, tls: bool = False) -> list[Message]:
    if tls:
        events = st.one_of(
            upserts(TLS_KINDS, TLS_SOURCES),
            upserts(TLS_KINDS, TLS_SOURCES),
            upserts(TLS_KINDS, TLS_SOURCES),
            upserts(TLS_KINDS, TLS_SOURCES),
            deletes(("Ingress", "Secret"), TLS_SOURCES),
            sync_ends(),
            st.just("dup"),
        )
    else:
        events = st.one_of(
            upserts(),
            upserts(),
            upserts(),
            deletes(),
            sync_begins(),
            sync_ends(),
            st.just("dup"),
            st.just("junk"),
        )
    out: list[Message] = []
    for item in draw(st.lists(events, min_size=8, max_size=50)):
        if item == "dup":
            if out:
                # The same fact again (a second watcher replica, a resync after the duplicate window).
                out.append(out[draw(st.integers(0, len(out) - 1))])
        elif item == "junk":
            out.append(("xdsbus.events.k8s.one.Service", b"\xc1 not msgpack"))
        else:
            out.append(_message(item))
    return out


# Half the examples of the translator properties are TLS-heavy logs.
ANY_LOG = st.one_of(logs(), logs(tls=True))


def _split(draw: st.DrawFn, n: int) -> list[int]:
    """Random batch boundaries over n messages: ascending cut points ending at n."""
    cuts = sorted(draw(st.sets(st.integers(1, max(1, n - 1)), max_size=n)) | {n})
    return [c for c in cuts if 0 < c <= n]


# -- helpers ----------------------------------------------------------------------------------------


def _fold(state: FoldState, messages: list[Message], start: int, end: int) -> BatchResult:
    """Fold messages[start:end] at stream sequences start+1..end."""
    result = BatchResult()
    for index in range(start, end):
        subject, data = messages[index]
        fold_message(state, index + 1, subject, data, result)
    return result


def _reference(messages: list[Message], end: int) -> Translator:
    """What replay computes at sequence `end`: the whole prefix folded at once, then a full build."""
    state = FoldState()
    _fold(state, messages, 0, end)
    translator = Translator(secret_box=BOX)
    translator.full_build(state)
    return translator


def _contents(translator: Translator) -> dict[ResourceKey, str]:
    return {key: res.sha256 for key, res in translator.table.items()}


def _apply(ledger: dict[ResourceKey, str], changes: Changes) -> None:
    """What a ledger reader does with a version's change list."""
    for key, res in changes.changed:
        ledger[key] = res.sha256
    for key in changes.removed:
        assert key in ledger, f"version removes {key}, which the ledger does not hold"
        del ledger[key]


def _checkpoint_round_trip(
    state: FoldState, published: dict[ResourceKey, str]
) -> tuple[FoldState, dict[ResourceKey, str]]:
    """Save and load a checkpoint exactly as the builder and replay store it."""
    data = checkpoints.encode(
        checkpoints.Checkpoint(
            scope="default",
            translator_version="test",
            state=state,
            ledger_version=state.seq,
            ledger_stream_seq=1,
            published=[(k.type_url, k.name, sha) for k, sha in sorted(published.items())],
        )
    )
    loaded = checkpoints.decode(data)
    return loaded.state, {ResourceKey(t, n): sha for t, n, sha in loaded.published}


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- properties -------------------------------------------------------------------------------------


@FAST
@given(data=st.data())
def test_batching_and_checkpoints_do_not_change_any_version(data: st.DataObject) -> None:
    """Fold in random batches, with checkpoint save/loads (and redeliveries of already-folded events) at
    random points: at every batch boundary the digest equals a fresh full build of the events so far,
    and the change lists applied one after the other give exactly the table."""
    messages = data.draw(ANY_LOG, label="log")
    n = len(messages)
    cuts = _split(data.draw, n)
    restarts = data.draw(st.sets(st.sampled_from(cuts[:-1])) if len(cuts) > 1 else st.just(set()))

    state = FoldState()
    translator = Translator(secret_box=BOX)
    translator.full_build(state)  # the builder starts every term with a full build
    ledger: dict[ResourceKey, str] = {}
    _apply(ledger, translator.table.commit())
    done = 0
    for cut in cuts:
        result = _fold(state, messages, done, cut)
        translator.update(state, result.changed)
        _apply(ledger, translator.table.commit())
        done = cut

        reference = _reference(messages, cut)
        assert translator.table.digest() == reference.table.digest(), f"digest differs at seq {cut}"
        assert ledger == _contents(translator), f"change lists do not add up to the table at seq {cut}"
        assert translator.statuses == reference.statuses, f"verdicts differ at seq {cut}"
        assert state.seq == cut

        if cut in restarts:
            state, published = _checkpoint_round_trip(state, ledger)
            translator = Translator(secret_box=BOX)
            translator.full_build(state)
            translator.table.set_committed(published)
            # A restart reproduces what the ledger holds: its first commit publishes nothing.
            assert not translator.table.commit(), "restore from a checkpoint produced a spurious change"
            # Events at or before the checkpoint delivered again fold to nothing.
            before = msgspec.msgpack.encode(state)
            again = _fold(state, messages, data.draw(st.integers(0, cut - 1), label="redeliver from"), cut)
            assert again.changed == []
            assert msgspec.msgpack.encode(state) == before, "a redelivered event changed the state"
            translator.update(state, again.changed)
            assert not translator.table.commit()

    final = _reference(messages, n)
    assert translator.table.digest() == final.table.digest()
    assert ledger == _contents(final)


@FAST
@given(messages=ANY_LOG)
def test_incremental_from_scratch_equals_full_build(messages: list[Message]) -> None:
    """One event per batch (the finest batching) and a full build of the final state agree."""
    state = FoldState()
    translator = Translator(secret_box=BOX)
    translator.full_build(state)
    for index, (subject, data) in enumerate(messages):
        result = BatchResult()
        fold_message(state, index + 1, subject, data, result)
        translator.update(state, result.changed)
    reference = _reference(messages, len(messages))
    assert translator.table.digest() == reference.table.digest()
    assert translator.statuses == reference.statuses


def _resealed(messages: list[Message]) -> list[Message]:
    """The same log with every sealed Secret sealed again: other nonces, other bytes, same content."""
    out: list[Message] = []
    for subject, data in messages:
        try:
            event = decode(data)
        except Exception:
            out.append((subject, data))
            continue
        if event.kind == "Secret" and is_sealed(event.body) and event.body.get("kid") == BOX.kid:
            where = {"source": event.source, "kind": event.kind, "key": event.key}
            event = msgspec.structs.replace(event, body=BOX.seal(BOX.open(event.body, **where), **where))
        out.append((subject, encode(event)))
    return out


@FAST
@given(messages=ANY_LOG)
def test_sealing_does_not_change_what_is_published(messages: list[Message]) -> None:
    """Secret sealing uses random nonces: the same events sealed again have other bodies, yet the
    translated resources and verdicts are the same."""
    again = _resealed(messages)
    first, second = _reference(messages, len(messages)), _reference(again, len(again))
    assert first.table.digest() == second.table.digest()
    assert first.statuses == second.statuses


@settings(max_examples=250, deadline=None)
@given(messages=logs(), data=st.data())
def test_fold_through_checkpoints_equals_straight_fold(messages: list[Message], data: st.DataObject) -> None:
    """The FoldState is all there is: folding with checkpoint save/loads (msgpack round-trips, as stored)
    at random points ends in exactly the state of folding straight through, resync progress included."""
    straight = FoldState()
    _fold(straight, messages, 0, len(messages))

    state = FoldState()
    done = 0
    for cut in _split(data.draw, len(messages)):
        _fold(state, messages, done, cut)
        done = cut
        if data.draw(st.booleans(), label=f"checkpoint at {cut}"):
            state, _ = _checkpoint_round_trip(state, {})
            # And a bare msgpack round-trip of the state is lossless too.
            state = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=FoldState)
    assert state == straight


# -- targeted examples (fast, readable failures) -----------------------------------------------------


def _run(events: list[Event | bytes]) -> tuple[FoldState, Translator, BatchResult]:
    state = FoldState()
    translator = Translator()
    result = BatchResult()
    for index, item in enumerate(events):
        data = item if isinstance(item, bytes) else encode(item)
        fold_message(state, index + 1, "xdsbus.events.k8s.one.Service", data, result)
    translator.full_build(state)
    return state, translator, result


def _svc(key: str, body: dict[str, Any], source: str = "k8s/one") -> Event:
    return Event(source=source, kind="Service", key=key, op=Op.UPSERT, rev=content_rev(body), body=body)


def _clusters(translator: Translator) -> set[str]:
    return {key.name for key, _ in translator.table.items() if key.type_url.endswith("Cluster")}


def test_sync_end_drops_unlisted_keys_only_when_all_parts_arrived() -> None:
    src, kind = "k8s/one", "Service"
    begin = Event(source=src, kind=kind, op=Op.SYNC_BEGIN, epoch=5)
    part0 = Event(source=src, kind=kind, op=Op.SYNC_END, epoch=5, body=SyncEnd(keys=["default/a"], parts=2))
    part1 = Event(
        source=src, kind=kind, op=Op.SYNC_END, epoch=5, body=SyncEnd(keys=["default/c"], part=1, parts=2)
    )
    base = [_svc("default/a", service("a")), _svc("default/b", service("b")), _svc("default/c", service("c"))]

    state, translator, _ = _run([*base, begin, part0])
    assert state.count() == 3, "the first of two sync_end parts must decide nothing"
    assert "outbound|80||b.default.svc.cluster.local" in _clusters(translator)

    state, translator, _ = _run([*base, begin, part0, part1])
    assert sorted(k for _, objs in state.objects["Service"].items() for k in objs) == [
        "default/a",
        "default/c",
    ]
    assert "outbound|80||b.default.svc.cluster.local" not in _clusters(translator)
    assert "outbound|80||a.default.svc.cluster.local" in _clusters(translator)


def test_stale_sync_end_decides_nothing() -> None:
    src, kind = "k8s/one", "Service"
    events: list[Event | bytes] = [
        _svc("default/a", service("a")),
        _svc("default/b", service("b")),
        Event(source=src, kind=kind, op=Op.SYNC_BEGIN, epoch=1),
        Event(source=src, kind=kind, op=Op.SYNC_BEGIN, epoch=2),
        # The older resync ends after a newer one began: it must not delete default/b.
        Event(source=src, kind=kind, op=Op.SYNC_END, epoch=1, body=SyncEnd(keys=["default/a"])),
    ]
    state, translator, _ = _run(events)
    assert state.count() == 2
    assert "outbound|80||b.default.svc.cluster.local" in _clusters(translator)


def test_malformed_envelopes_are_rejected_with_a_reason_and_the_rest_applies() -> None:
    missing_key = msgspec.msgpack.encode({"v": 1, "source": "k8s/one", "kind": "Service", "op": "upsert"})
    bad_sync_end = encode(Event(source="k8s/one", kind="Service", op=Op.SYNC_END, epoch=9, body={"x": 1}))
    state, translator, result = _run(
        [b"\x00garbage", missing_key, bad_sync_end, _svc("default/a", service("a"))]
    )
    reasons = {r.seq: r.reason for r in result.rejected}
    assert set(reasons) == {1, 2, 3}
    assert "undecodable envelope" in reasons[1]
    assert "upsert of Service without a key" in reasons[2]
    assert "sync_end of k8s/one Service" in reasons[3] and "keys" in reasons[3]
    assert state.seq == 4
    assert _clusters(translator) == {"outbound|80||a.default.svc.cluster.local"}


def test_invalid_service_is_rejected_alone_naming_the_field() -> None:
    _, translator, _ = _run([_svc("default/x", _bad_port_service()), _svc("default/b", service("b"))])
    status = translator.statuses[ObjectRef("Service", "k8s/one", "default/x")]
    assert status.state == "rejected"
    assert status.reason.startswith("Service default/x:")
    assert "$.spec.ports[0].port" in status.reason
    assert _clusters(translator) == {"outbound|80||b.default.svc.cluster.local"}


def test_same_body_with_another_rev_changes_nothing() -> None:
    body = service("a")
    state = FoldState()
    result = BatchResult()
    fold_message(state, 1, "s", encode(_svc("default/a", body)), result)
    again = Event(source="k8s/one", kind="Service", key="default/a", op=Op.UPSERT, rev="other", body=body)
    second = BatchResult()
    fold_message(state, 2, "s", encode(again), second)
    assert result.changed and not second.changed
    assert state.seq == 2
