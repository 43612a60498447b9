"""Pulling a module from an OCI registry over the distribution protocol (`GET /v2/<name>/manifests/<ref>`,
`GET /v2/<name>/blobs/<digest>`), authenticating when challenged (oci_auth.py), verifying every manifest
and blob against its digest, and finding the module by the image's layout (oci_layouts.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import aiohttp

from xdsbus.wasm import downloads, oci_auth, oci_layouts
from xdsbus.wasm.credentials import Credentials
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.references import ImageRef

_ACCEPT = ", ".join(oci_layouts.MANIFEST_TYPES)
_MANIFEST_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class PulledImage:
    """The module of an image, and the image pinned by the digest of the manifest it came from."""

    module: bytes
    pinned: ImageRef


@dataclass(frozen=True)
class _Manifest:
    digest: str
    doc: dict[str, Any]
    media_type: str


class RegistryClient:
    """One image pull: remembers the authorization a challenge earned, for the requests after it."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        image: ImageRef,
        credentials: Credentials | None,
        max_bytes: int = downloads.DEFAULT_MAX_BYTES,
    ) -> None:
        self.session = session
        self.image = image
        self.credentials = credentials
        self.max_bytes = max_bytes
        self.what = f"image {image.url}"
        scheme = "http" if image.plain_http else "https"
        self.base = f"{scheme}://{image.registry}/v2/{image.repository}"
        self._authorization = ""

    async def pull(self) -> PulledImage:
        """The module in the image, found by its layout; every document and blob verified."""
        manifest = await self._manifest(self.image.reference)
        if manifest.media_type in oci_layouts.INDEX_TYPES:
            manifest = await self._manifest(oci_layouts.index_choice(manifest.doc, self.what))
        layer = oci_layouts.module_layer(manifest.doc, self.what)
        blob = await self._get(
            f"{self.base}/blobs/{layer.digest}", self.max_bytes, f"{self.what}: layer {layer.digest}"
        )
        _verify(blob, layer.digest, f"{self.what}: layer")
        module = oci_layouts.extract(layer, blob, self.what, self.max_bytes)
        return PulledImage(module=module, pinned=self.image.pinned(manifest.digest))

    async def _manifest(self, reference: str) -> _Manifest:
        resp = await self._request(
            f"{self.base}/manifests/{reference}", _MANIFEST_MAX_BYTES, {"Accept": _ACCEPT}
        )
        label = f"{self.what}: manifest {reference}"
        if resp.status != 200:
            raise downloads.status_error(label, resp.status)
        digest = "sha256:" + hashlib.sha256(resp.body).hexdigest()
        if reference.startswith("sha256:"):
            _verify(resp.body, reference, f"{self.what}: manifest")
        announced = resp.headers.get("docker-content-digest", "")
        if announced and announced != digest:
            raise ModuleFetchError(
                f"{label}: the registry says its digest is {announced}, the content hashes to {digest}",
                "bad_digest",
            )
        doc = oci_layouts.load_manifest(resp.body, label)
        return _Manifest(digest, doc, oci_layouts.media_type(doc, resp.headers.get("content-type", "")))

    async def _get(self, url: str, max_bytes: int, label: str) -> bytes:
        resp = await self._request(url, max_bytes)
        if resp.status != 200:
            raise downloads.status_error(label, resp.status)
        return resp.body

    async def _request(
        self, url: str, max_bytes: int, headers: dict[str, str] | None = None
    ) -> downloads.Response:
        """A GET that answers one authentication challenge, then keeps the authorization it earned."""
        sent = dict(headers or {})
        if self._authorization:
            sent["Authorization"] = self._authorization
        resp = await downloads.get(self.session, url, headers=sent, max_bytes=max_bytes, what=self.what)
        if resp.status != 401 or self._authorization:
            return resp
        challenge = oci_auth.parse_challenge(resp.headers.get("www-authenticate", ""))
        if challenge is None:
            raise ModuleFetchError(
                f"{self.what}: HTTP 401 without an authentication challenge", "unauthorized"
            )
        scope = f"repository:{self.image.repository}:pull"
        self._authorization = await oci_auth.authorization(
            self.session, challenge, self.credentials, scope, self.what
        )
        sent["Authorization"] = self._authorization
        resp = await downloads.get(self.session, url, headers=sent, max_bytes=max_bytes, what=self.what)
        if resp.status == 401:
            raise ModuleFetchError(
                f"{self.what}: the registry refused the credentials (HTTP 401)", "unauthorized"
            )
        return resp


def _verify(data: bytes, digest: str, what: str) -> None:
    actual = "sha256:" + hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise ModuleFetchError(
            f"{what} should have digest {digest}, the content hashes to {actual}", "bad_digest"
        )
