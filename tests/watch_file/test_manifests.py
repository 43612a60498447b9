"""Parsing manifest files: objects, keys, bodies, and errors that name the file and line."""

from __future__ import annotations

import textwrap

from xdsbus_watch_file.manifests import ObjectId, parse_manifests


def parse(path: str, text: str):
    return parse_manifests(path, textwrap.dedent(text).lstrip("\n").encode())


def test_multi_document_yaml_keys_and_lines() -> None:
    parsed = parse(
        "apps/web.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
        spec: {ports: [{port: 80}]}
        ---
        # comments only: an empty document
        ---
        apiVersion: gateway.networking.k8s.io/v1
        kind: GatewayClass
        metadata:
          name: higress
          namespace: ignored-for-cluster-scoped
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: api, namespace: shop}
        """,
    )
    assert parsed.parsed and parsed.complete and parsed.errors == ()
    assert [(m.id, m.line) for m in parsed.objects] == [
        (ObjectId("Service", "default/web"), 1),
        (ObjectId("GatewayClass", "higress"), 9),
        (ObjectId("Service", "shop/api"), 15),
    ]
    # The namespace a Kubernetes API server would have filled in.
    assert parsed.objects[0].body["metadata"] == {"name": "web", "namespace": "default"}


def test_status_and_managed_fields_are_stripped_and_timestamps_stay_strings() -> None:
    parsed = parse(
        "a.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata:
          name: c
          creationTimestamp: 2024-05-01T10:00:00Z
          managedFields: [{manager: kubectl}]
        data: {k: v}
        status: {phase: whatever}
        """,
    )
    (obj,) = parsed.objects
    assert obj.body == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default", "creationTimestamp": "2024-05-01T10:00:00Z"},
        "data": {"k": "v"},
    }


def test_kind_list_items_with_their_lines() -> None:
    parsed = parse(
        "list.yaml",
        """
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
          metadata: {name: one}
        - apiVersion: v1
          kind: Service
          metadata: {name: two}
        """,
    )
    assert [(m.id.key, m.line) for m in parsed.objects] == [("default/one", 4), ("default/two", 7)]


def test_json_file() -> None:
    parsed = parse_manifests(
        "svc.json", b'{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "j"}, "status": {}}'
    )
    assert [m.id for m in parsed.objects] == [ObjectId("Service", "default/j")]
    assert "status" not in parsed.objects[0].body


def test_invalid_yaml_names_the_line_and_rejects_the_whole_file() -> None:
    parsed = parse(
        "bad.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata:
          name: web
         spec: oops
        """,
    )
    assert not parsed.parsed and not parsed.complete and parsed.objects == ()
    (error,) = parsed.errors
    assert error.line == 5
    assert str(error).startswith("bad.yaml:5: invalid YAML:")


def test_invalid_json_names_the_line() -> None:
    parsed = parse_manifests("bad.json", b'{\n  "kind": "Service",\n  oops\n}')
    assert not parsed.parsed
    assert parsed.errors[0].line == 3


def test_invalid_documents_are_rejected_alone() -> None:
    parsed = parse(
        "mixed.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: good}
        ---
        apiVersion: v1
        kind: Service
        metadata: {namespace: x}
        ---
        - just a list
        ---
        kind: Service
        metadata: {name: no-api-version}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: also-good}
        """,
    )
    assert parsed.parsed and not parsed.complete
    assert [m.id.key for m in parsed.objects] == ["default/good", "default/also-good"]
    assert [str(e) for e in parsed.errors] == [
        "mixed.yaml:5: Service has no metadata.name",
        "mixed.yaml:9: document is not a mapping (it is a list)",
        "mixed.yaml:11: Service has no apiVersion",
    ]


def test_same_key_twice_in_one_file_first_wins() -> None:
    parsed = parse(
        "dup.yaml",
        """
        apiVersion: v1
        kind: Service
        metadata: {name: web}
        spec: {first: true}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: web, namespace: default}
        """,
    )
    (obj,) = parsed.objects
    assert obj.body["spec"] == {"first": True}
    # The key is known, so the file's content is still fully known.
    assert parsed.complete
    assert "first at line 1" in str(parsed.errors[0]) and parsed.errors[0].line == 6


def test_object_that_cannot_be_encoded_is_rejected_but_identified() -> None:
    parsed = parse(
        "keys.yaml",
        """
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: c}
        data: {80: http}
        """,
    )
    assert parsed.objects == () and parsed.complete
    assert "ConfigMap default/c cannot be encoded" in str(parsed.errors[0])
