"""Where the wasm module is inside an OCI image, for the layouts Higress and Istio accept:

- an image whose last layer is a tar.gz (docker `rootfs.diff.tar.gzip` or OCI `tar+gzip`) holding a
  file named `plugin.wasm` (how Higress builds its plugins: `FROM scratch` + `COPY plugin.wasm`, or
  `oras push plugin.tar.gz`);
- an OCI wasm artifact: a layer of media type `application/vnd.module.wasm.content.layer.v1+wasm` whose
  content is the module itself.
"""

from __future__ import annotations

import gzip
import io
import json
import posixpath
import tarfile
from dataclasses import dataclass
from typing import Any

from xdsbus.wasm.errors import ModuleFetchError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_MANIFEST_LIST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
TAR_GZIP_LAYERS = (DOCKER_LAYER, OCI_LAYER)
PLUGIN_FILE = "plugin.wasm"
WASM_MAGIC = b"\0asm"


@dataclass(frozen=True)
class Layer:
    """The layer that holds the module: its digest, and whether it is a tar.gz to look into."""

    digest: str
    media_type: str
    size: int

    @property
    def archived(self) -> bool:
        """Whether the module is `plugin.wasm` inside a tar.gz (else the layer is the module)."""
        return self.media_type in TAR_GZIP_LAYERS


def load_manifest(data: bytes, what: str) -> dict[str, Any]:
    """A manifest or index document; ModuleFetchError when it is not a JSON object."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModuleFetchError(f"{what}: the manifest is not JSON", "bad_layout") from exc
    if not isinstance(doc, dict):
        raise ModuleFetchError(f"{what}: the manifest is not a JSON object", "bad_layout")
    return doc


def media_type(doc: dict[str, Any], header: str) -> str:
    """A manifest's media type: its own field, else the Content-Type it was served with."""
    declared = doc.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    return header.split(";", 1)[0].strip()


def index_choice(doc: dict[str, Any], what: str) -> str:
    """The digest of the manifest to use from an image index: a wasm platform's if listed, else the first."""
    manifests = [
        m for m in doc.get("manifests") or [] if isinstance(m, dict) and isinstance(m.get("digest"), str)
    ]
    if not manifests:
        raise ModuleFetchError(f"{what}: the image index lists no manifest", "bad_layout")
    for entry in manifests:
        platform = entry.get("platform") or {}
        if isinstance(platform, dict) and "wasm" in (platform.get("architecture"), platform.get("os")):
            return str(entry["digest"])
    return str(manifests[0]["digest"])


def module_layer(doc: dict[str, Any], what: str) -> Layer:
    """The layer that holds the module: a wasm-artifact layer if any, else the last layer when it is a
    tar.gz (the compat layout)."""
    layers = [entry for entry in doc.get("layers") or [] if isinstance(entry, dict)]
    if not layers:
        raise ModuleFetchError(f"{what}: the image has no layers", "bad_layout")
    for entry in layers:
        if entry.get("mediaType") == WASM_LAYER:
            return _layer(entry, what)
    last = layers[-1]
    if last.get("mediaType") in TAR_GZIP_LAYERS:
        return _layer(last, what)
    kinds = ", ".join(str(entry.get("mediaType")) for entry in layers)
    raise ModuleFetchError(
        f"{what}: no layer holds a wasm module (layers: {kinds}; expected a {WASM_LAYER} layer, or a last"
        f" layer of {DOCKER_LAYER} or {OCI_LAYER} holding {PLUGIN_FILE})",
        "bad_layout",
    )


def _layer(entry: dict[str, Any], what: str) -> Layer:
    digest, size = entry.get("digest"), entry.get("size", 0)
    if not isinstance(digest, str) or not digest.startswith("sha256:"):
        raise ModuleFetchError(f"{what}: a layer has no sha256 digest ({digest!r})", "bad_layout")
    return Layer(
        digest=digest, media_type=str(entry.get("mediaType")), size=size if isinstance(size, int) else 0
    )


def extract(layer: Layer, blob: bytes, what: str, max_bytes: int) -> bytes:
    """The module bytes from the layer's blob (already verified against its digest)."""
    module = _plugin_file(blob, what, max_bytes) if layer.archived else blob
    if not module.startswith(WASM_MAGIC):
        raise ModuleFetchError(f"{what}: the module in layer {layer.digest} is not WebAssembly", "bad_layout")
    return module


def _plugin_file(blob: bytes, what: str, max_bytes: int) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as archive:
            for member in archive:
                if member.isfile() and posixpath.basename(member.name) == PLUGIN_FILE:
                    if member.size > max_bytes:
                        raise ModuleFetchError(
                            f"{what}: {PLUGIN_FILE} is larger than {max_bytes} bytes", "too_large"
                        )
                    handle = archive.extractfile(member)
                    if handle is None:
                        break
                    return handle.read()
    except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as exc:
        raise ModuleFetchError(f"{what}: the layer is not a readable tar.gz: {exc}", "bad_layout") from exc
    raise ModuleFetchError(f"{what}: no {PLUGIN_FILE} in the image's layer", "bad_layout")
