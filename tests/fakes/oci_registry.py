"""A protocol-faithful fake OCI registry for tests: aiohttp.web in the test's own event loop.

It speaks the OCI distribution specification's pull side and the docker token authentication that
registries put in front of it, so that xdsbus.wasm's client is tested against the protocol rather than
against itself:

* ``GET /v2/`` answers 200 with ``Docker-Distribution-API-Version: registry/2.0`` (401 with the challenge
  when authentication is on).
* ``GET|HEAD /v2/<name>/manifests/<tag or digest>``: the manifest as it was pushed (byte for byte), with
  ``Content-Type`` its media type and ``Docker-Content-Digest`` its sha256. A manifest whose media type
  the request's ``Accept`` does not list is answered 404 ``MANIFEST_UNKNOWN``, as distribution does for an
  OCI manifest asked for without the OCI type. Unknown repository, tag or digest: 404 with the spec's error
  body (``NAME_UNKNOWN``, ``MANIFEST_UNKNOWN``).
* ``GET|HEAD /v2/<name>/blobs/<digest>``: the blob, ``Docker-Content-Digest``; with ``redirect_blobs`` a
  307 to ``/storage/<digest>`` first (registries hand blobs to object storage that way).
* With ``users`` set, every ``/v2`` request without a valid bearer token is answered 401 with
  ``WWW-Authenticate: Bearer realm="<url>/token",service="fake-registry",scope="repository:<name>:pull"``;
  ``GET /token?service=...&scope=...`` checks HTTP Basic credentials against ``users`` (anonymous gets a
  token only with ``anonymous_pull``) and answers ``{"token": ..., "access_token": ...}``; a token is
  good for the scopes it was issued for.

Images are pushed by driver methods in the layouts Higress and Istio pull: ``docker`` (docker manifest
v2, the last layer a ``rootfs.diff.tar.gzip`` holding ``plugin.wasm``, as ``docker build`` of a Higress
plugin produces), ``oci`` (the same as an OCI manifest with a ``tar+gzip`` layer, as ``oras push
plugin.tar.gz`` produces), ``artifact`` (the OCI wasm artifact: a config layer and a
``application/vnd.module.wasm.content.layer.v1+wasm`` layer that is the module), and ``index`` (an OCI
image index pointing at an ``oci`` manifest).

Not faithful (on purpose): no push endpoints (tests push through the driver), no catalog or tag listing,
no range requests, no token expiry. Fault injection: ``corrupt_blob(digest)`` serves other bytes under
a digest; ``failing`` answers every request with that HTTP status; ``requests`` records what was asked.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import secrets
import tarfile
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
LAYOUTS = ("docker", "oci", "artifact", "index")
SERVICE = "fake-registry"


def digest_of(data: bytes) -> str:
    """`sha256:<hex>` of `data`, as the registry names content."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def plugin_layer(wasm: bytes, name: str = "plugin.wasm") -> bytes:
    """A tar.gz holding the module as `name` (fixed mtime, so equal modules give equal layers)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(wasm)
        info.mode = 0o644
        archive.addfile(info, io.BytesIO(wasm))
    return gzip.compress(raw.getvalue(), mtime=0)


@dataclass
class _Repository:
    manifests: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # digest -> (media type, bytes)
    tags: dict[str, str] = field(default_factory=dict)  # tag -> digest


class OciRegistry:
    """The fake registry; `await start()` (or `async with`) to serve it on a free loopback port."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        anonymous_pull: bool = False,
        redirect_blobs: bool = False,
    ) -> None:
        self.users = users
        self.anonymous_pull = anonymous_pull
        self.redirect_blobs = redirect_blobs
        self.failing: int | None = None
        self.requests: list[str] = []
        self._repositories: dict[str, _Repository] = {}
        self._blobs: dict[str, bytes] = {}
        self._corrupt: dict[str, bytes] = {}
        self._tokens: dict[str, set[str]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def start(self) -> Self:
        """Serve on 127.0.0.1 at a free port (`self.port`)."""
        app = web.Application()
        app.router.add_get("/v2/", self._base)
        app.router.add_route("*", "/v2/{name:.+}/manifests/{reference}", self._manifest)
        app.router.add_route("*", "/v2/{name:.+}/blobs/{digest}", self._blob)
        app.router.add_get("/storage/{digest}", self._storage)
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def host(self) -> str:
        """`127.0.0.1:<port>`, the registry part of an image reference."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The registry's base URL."""
        return f"http://{self.host}"

    def image_url(self, repository: str, tag: str) -> str:
        """`oci://127.0.0.1:<port>/<repository>:<tag>`."""
        return f"oci://{self.host}/{repository}:{tag}"

    # -- driver ----------------------------------------------------------------------------------------

    def push_blob(self, data: bytes) -> str:
        """Store a blob; returns its digest."""
        digest = digest_of(data)
        self._blobs[digest] = data
        return digest

    def push_manifest(self, repository: str, tag: str, media_type: str, doc: dict[str, Any]) -> str:
        """Store a manifest (serialized once, served byte for byte) under `tag`; returns its digest."""
        data = json.dumps(doc, indent=3).encode()
        digest = digest_of(data)
        repo = self._repositories.setdefault(repository, _Repository())
        repo.manifests[digest] = (media_type, data)
        if tag:
            repo.tags[tag] = digest
        return digest

    def push_plugin(self, repository: str, tag: str, wasm: bytes, layout: str = "docker") -> str:
        """Push a wasm module as an image in one of LAYOUTS; returns the digest of the tag's manifest."""
        if layout == "docker":
            return self._push_image(
                repository, tag, DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, plugin_layer(wasm)
            )
        if layout == "oci":
            return self._push_image(repository, tag, OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, plugin_layer(wasm))
        if layout == "artifact":
            return self._push_image(repository, tag, OCI_MANIFEST, WASM_CONFIG, WASM_LAYER, wasm)
        if layout == "index":
            inner = self._push_image(repository, "", OCI_MANIFEST, OCI_CONFIG, OCI_LAYER, plugin_layer(wasm))
            size = len(self._repositories[repository].manifests[inner][1])
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": inner,
                        "size": size,
                        "platform": {"architecture": "wasm", "os": "wasip1"},
                    }
                ],
            }
            return self.push_manifest(repository, tag, OCI_INDEX, doc)
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")

    def _push_image(
        self, repository: str, tag: str, manifest_type: str, config_type: str, layer_type: str, layer: bytes
    ) -> str:
        config = json.dumps({"architecture": "wasm", "os": "wasip1", "rootfs": {"type": "layers"}}).encode()
        doc = {
            "schemaVersion": 2,
            "mediaType": manifest_type,
            "config": {"mediaType": config_type, "digest": self.push_blob(config), "size": len(config)},
            "layers": [{"mediaType": layer_type, "digest": self.push_blob(layer), "size": len(layer)}],
        }
        return self.push_manifest(repository, tag, manifest_type, doc)

    def manifest(self, repository: str, reference: str) -> dict[str, Any]:
        """A stored manifest, parsed (tests read layer digests from it)."""
        repo = self._repositories[repository]
        digest = repo.tags.get(reference, reference)
        return dict(json.loads(repo.manifests[digest][1]))

    def corrupt_blob(self, digest: str, data: bytes = b"\0asm\x01\0\0\0 not what was pushed") -> None:
        """Serve `data` under `digest` from now on."""
        self._corrupt[digest] = data

    # -- protocol --------------------------------------------------------------------------------------

    def _record(self, request: web.Request) -> web.Response | None:
        self.requests.append(f"{request.method} {request.path_qs}")
        if self.failing is not None:
            return web.Response(status=self.failing, text="failing on purpose\n")
        return None

    def _denied(self, request: web.Request, name: str) -> web.Response | None:
        """401 with the bearer challenge unless the request carries a token good for `name`."""
        if self.users is None:
            return None
        scope = f"repository:{name}:pull" if name else ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and (not scope or scope in self._tokens.get(auth[7:], set())):
            return None
        challenge = f'Bearer realm="{self.url}/token",service="{SERVICE}"' + (
            f',scope="{scope}"' if scope else ""
        )
        return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})

    async def _base(self, request: web.Request) -> web.Response:
        failed = self._record(request) or self._denied(request, "")
        if failed is not None:
            return failed
        return web.json_response({}, headers={"Docker-Distribution-API-Version": "registry/2.0"})

    async def _manifest(self, request: web.Request) -> web.Response:
        name, reference = request.match_info["name"], request.match_info["reference"]
        failed = self._record(request) or self._denied(request, name)
        if failed is not None:
            return failed
        if request.method not in ("GET", "HEAD"):
            return _error(405, "UNSUPPORTED", "the fake registry takes no pushes")
        repo = self._repositories.get(name)
        if repo is None:
            return _error(404, "NAME_UNKNOWN", f"repository name not known to registry: {name}")
        digest = repo.tags.get(reference, reference)
        if digest not in repo.manifests:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest unknown: {reference}")
        media_type, data = repo.manifests[digest]
        accepted = {
            part.split(";")[0].strip()
            for part in request.headers.getall("Accept", [])
            for part in part.split(",")
        }
        if media_type not in accepted:
            return _error(
                404, "MANIFEST_UNKNOWN", f"manifest of type {media_type} not accepted by the client"
            )
        headers = {"Docker-Content-Digest": digest, "Content-Type": media_type}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        name, digest = request.match_info["name"], request.match_info["digest"]
        failed = self._record(request) or self._denied(request, name)
        if failed is not None:
            return failed
        if name not in self._repositories or digest not in self._blobs:
            return _error(404, "BLOB_UNKNOWN", f"blob unknown to registry: {digest}")
        if self.redirect_blobs:
            raise web.HTTPTemporaryRedirect(f"{self.url}/storage/{digest}")
        return self._blob_response(request, digest)

    async def _storage(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        digest = request.match_info["digest"]
        if digest not in self._blobs:
            return web.Response(status=404)
        return self._blob_response(request, digest)

    def _blob_response(self, request: web.Request, digest: str) -> web.Response:
        data = self._corrupt.get(digest, self._blobs[digest])
        headers = {"Docker-Content-Digest": digest, "Content-Type": "application/octet-stream"}
        if request.method == "HEAD":
            return web.Response(headers={**headers, "Content-Length": str(len(data))})
        return web.Response(body=data, headers=headers)

    async def _token(self, request: web.Request) -> web.Response:
        self.requests.append(f"{request.method} {request.path_qs}")
        if request.query.get("service") != SERVICE:
            return _error(400, "UNSUPPORTED", f"unknown service {request.query.get('service')!r}")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if (self.users or {}).get(user) != password:
                return _error(401, "UNAUTHORIZED", "invalid username or password")
        elif not self.anonymous_pull:
            return _error(401, "UNAUTHORIZED", "anonymous pulls are not allowed")
        token = secrets.token_hex(16)
        self._tokens[token] = set(request.query.getall("scope", []))
        return web.json_response({"token": token, "access_token": token, "expires_in": 300})


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = {"errors": [{"code": code, "message": message, "detail": None}]}
    return web.json_response(body, status=status, headers=headers)
