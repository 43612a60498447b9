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
_DROPPED_METADATA = frozenset({"managedFields", "resourceVersion", "selfLink"})


def normalize(obj: Mapping[str, Any], api_version: str, kind: str) -> dict[str, Any]:
    """The event body of `obj`, with `apiVersion` and `kind` set (list items of built-in kinds lack them)."""
    body: dict[str, Any] = {k: v for k, v in obj.items() if k != "status"}
    body["apiVersion"] = api_version
    body["kind"] = kind
    metadata = obj.get("metadata")
    meta = (
        {k: v for k, v in metadata.items() if k not in _DROPPED_METADATA}
        if isinstance(metadata, Mapping)
        else {}
    )
    annotations = meta.get("annotations")
    if isinstance(annotations, Mapping) and LAST_APPLIED in annotations:
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
    if not isinstance(metadata, Mapping):
        return None, ""
    namespace = metadata.get("namespace")
    name = metadata.get("name")
    if not isinstance(namespace, str) or not namespace:
        namespace = None
    return namespace, name if isinstance(name, str) else ""
