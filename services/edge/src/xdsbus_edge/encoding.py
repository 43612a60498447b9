"""Wire encoding of xDS responses from pre-serialized resources, without building protobuf objects.

A response is a handful of length-delimited fields around the resources, and every resource is already
a serialized `google.protobuf.Any` (its ledger body). Splicing those bytes into the response is
byte-for-byte what protobuf would produce for the same message, and costs one `join` per send instead
of parsing and re-serializing every resource for every connection. tests/edge/test_encoding.py checks
the spliced bytes against the protobuf classes.

Field numbers (envoy.service.discovery.v3):
  DiscoveryResponse       version_info=1 resources=2 type_url=4 nonce=5
  DeltaDiscoveryResponse  system_version_info=1 resources=2 type_url=4 nonce=5 removed_resources=6
  Resource                version=1 resource=2 name=3
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from xdsbus.contract.wire import field


def _string_field(number: int, text: str) -> bytes:
    return field(number, text.encode()) if text else b""


@functools.lru_cache(maxsize=256)
def _cached_string_field(number: int, text: str) -> bytes:
    # Type URLs and version strings repeat across every response of a push.
    return _string_field(number, text)


def sotw_response(version_info: str, type_url: str, nonce: str, resources: Iterable[bytes]) -> bytes:
    """A serialized DiscoveryResponse.

    `resources` are the pieces of the already encoded field-2 entries (`tag, length`, then the Any
    bytes), see `snapshot.entry`; a pre-joined blob of them works too."""
    return b"".join(
        (
            _cached_string_field(1, version_info),
            *resources,
            _cached_string_field(4, type_url),
            _string_field(5, nonce),
        )
    )


def delta_response(
    system_version_info: str,
    type_url: str,
    nonce: str,
    resources: Iterable[bytes],
    removed: Iterable[str],
) -> bytes:
    """A serialized DeltaDiscoveryResponse.

    `resources` are encoded field-2 entries holding a whole `Resource` message, see
    `CachedResource.delta_entry`."""
    return b"".join(
        (
            _cached_string_field(1, system_version_info),
            *resources,
            _cached_string_field(4, type_url),
            _string_field(5, nonce),
            *(field(6, name.encode()) for name in removed),
        )
    )
