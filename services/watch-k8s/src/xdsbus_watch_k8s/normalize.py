"""What an object from the API server looks like on the event log.

The body is the object as the API returns it (camelCase JSON data), minus what changes without the
object changing: the server's bookkeeping (resourceVersion, managedFields, selfLink), kubectl's copy of
the last applied configuration, and `status`. Dropping `status` is what keeps this source's own status
writes (and every controller's) from coming back as events. Two replicas normalize the same object to
the same body, so they publish the same content hash and JetStream keeps one copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
_DROPPED_METADATA = ("managedFields", "resourceVersion", "selfLink")


def normalize(obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """The event body of `obj`, with `apiVersion` and `kind` set (list items of built-in kinds lack them)."""
    # Copies with keys popped rather than comprehensions, and `type(...) is dict` before the slower ABC
    # check: the same keys in the same order at half the cost (every listed object passes here,
    # bench/cold_load.py).
    body: dict[str, Any] = dict(obj)
    body.pop("status", None)
    body["apiVersion"] = api_version
    body["kind"] = kind
    metadata = obj.get("metadata")
    meta: dict[str, Any] = {}
    if type(metadata) is dict or isinstance(metadata, Mapping):
        meta = dict(metadata)
        for dropped in _DROPPED_METADATA:
            meta.pop(dropped, None)
    annotations = meta.get("annotations")
    if (type(annotations) is dict or isinstance(annotations, Mapping)) and LAST_APPLIED in annotations:
        kept = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        if kept:
            meta["annotations"] = kept
        else:
            del meta["annotations"]
    body["metadata"] = meta
    return body


def object_name(obj: Mapping[str, Any]) -> tuple[str | None, str]:
    """(namespace, name) of an object from the API; namespace None when absent, name "" when missing."""
    metadata = obj.get("metadata")
    if type(metadata) is not dict and not isinstance(metadata, Mapping):
        return None, ""
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    if not isinstance(namespace, str) or not namespace:
        namespace = None
    return namespace, name if isinstance(name, str) else ""
