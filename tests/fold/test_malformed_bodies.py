"""No object body can break the translation (README: "the builder never stops on bad input"): a body with
any field replaced by any value is translated or rejected with a reason, and the other objects still get
their resources. An exception here would stop the builder, and again on every restart."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.objects import endpoint_slice, ingress, service
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.translate.translator import Translator

SOURCE = "k8s/fuzz"


def _external() -> dict[str, Any]:
    body = service("a", ports=(80,))
    body["spec"].update(type="ExternalName", externalName="a.example.com")
    return body


def _v1_endpoints() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "a", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.0.0.7"}], "ports": [{"name": "http-80", "port": 8080}]}],
    }


def _named_port_ingress() -> dict[str, Any]:
    body = ingress("n", "foo.com", "a")
    body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http-80"}
    body["spec"]["defaultBackend"] = {"service": {"name": "a", "port": {"number": 80}}}
    return body


SEEDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Service", "default/a", service("a", ports=(80, 8080))),
    ("Service", "default/ext", _external()),
    ("EndpointSlice", "default/a-1", endpoint_slice("a", ["10.0.0.1", "10.0.0.2"])),
    ("Endpoints", "default/a", _v1_endpoints()),
    ("Ingress", "default/i", ingress("i", "foo.com", "a", path="/x")),
    ("Ingress", "default/n", _named_port_ingress()),
]

ODD_INTS = st.one_of(st.sampled_from([0, -1, 65536, 2**32, 2**64, -(2**63)]), st.integers())
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 65536, 2**32, 2**63 - 1, -(2**63)]),
    st.integers(),
    st.floats(allow_nan=True),
    st.sampled_from(["", "abc", "*", "/", "a..b", "ü", " x ", "Exact", "Prefix", "ExternalName", "UDP"]),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
    st.lists(st.integers(-2, 70000), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf of a body (a value that could be replaced)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _paths(v, (*prefix, k))]
    if isinstance(node, list) and node:
        return [p for i, v in enumerate(node) for p in _paths(v, (*prefix, i))]
    return [prefix]


def _replace(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def _get(body: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = body
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    kind, key, body = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(body)
        numbers = [p for p in paths if type(_get(body, p)) is int]
        if numbers and draw(st.booleans()):
            # Ports and the like: numbers out of any sensible range.
            body = _replace(body, draw(st.sampled_from(numbers)), draw(ODD_INTS))
            continue
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 4)) == 0 and len(path) > 1:
            path = path[:-1]  # sometimes a whole object or list instead
        body = _replace(body, path, draw(ODD_VALUES))
    return kind, key, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=mutated(), order=st.booleans())
def test_any_broken_body_is_translated_or_rejected_never_raises(
    bad: tuple[str, str, dict[str, Any]], order: bool
) -> None:
    kind, key, body = bad
    state = FoldState()
    translator = Translator()
    translator.full_build(state)
    good = [
        Event(source=SOURCE, kind=k, key=f"{key_}-good", op=Op.UPSERT, rev="1", body=b)
        for k, key_, b in SEEDS
    ]
    broken = Event(source=SOURCE, kind=kind, key=key, op=Op.UPSERT, rev="2", body=body)
    events = [broken, *good] if order else [*good, broken]
    for seq, event in enumerate(events, start=1):
        translator.update(state, apply(state, seq, event))  # must not raise

    status = translator.statuses[ObjectRef(kind, SOURCE, key)]
    if status.state == "rejected":
        assert status.reason.startswith(f"{kind} {key}: "), status.reason
    # A full build of the same state agrees with the incremental one.
    fresh = Translator()
    fresh.full_build(state)
    assert fresh.table.digest() == translator.table.digest()
