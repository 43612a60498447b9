"""What a watcher does with a WasmPlugin before publishing it: fetch its module and record the digest
(and, for an image, the manifest digest it was pulled at) in the body as a fact (facts.py; docs/design.md
§6). A plugin without `sha256` is named by that digest; for one with `sha256` it tells the builder whether
the module matches.

`imagePullPolicy` follows Higress: `Always` fetches again every time the plugin is published (its
resyncs included), `IfNotPresent` reuses what this process resolved for the same URL; unspecified is
`IfNotPresent`, except for an image tagged `latest` (or untagged), which is `Always`.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from xdsbus.wasm.credentials import Credentials, DockerConfig
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.facts import ResolvedModule, with_resolved
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus.wasm.references import DEFAULT_TAG, parse_image, scheme_of

log = logging.getLogger(__name__)

ALWAYS = "Always"
IF_NOT_PRESENT = "IfNotPresent"

# (namespace, Secret name) -> the `.dockerconfigjson` of that Secret, or None when it is not known.
PullSecretReader = Callable[[str, str], Awaitable[bytes | None]]


def pull_policy(declared: object, url: str) -> str:
    """The effective pull policy of a plugin (Higress: unspecified means IfNotPresent, but `latest`
    means Always)."""
    if declared in (ALWAYS, IF_NOT_PRESENT):
        return str(declared)
    try:
        if scheme_of(url) == "oci":
            image = parse_image(url)
            if not image.digest and image.tag == DEFAULT_TAG:
                return ALWAYS
    except ModuleFetchError:
        pass
    return IF_NOT_PRESENT


class ModuleResolver:
    """Resolves plugins' module digests, remembering what it found for IfNotPresent."""

    def __init__(self, fetcher: ModuleFetcher) -> None:
        self.fetcher = fetcher
        self._found: dict[str, ResolvedModule] = {}

    async def resolve_plugin(self, body: Mapping[str, Any], pull_secret: PullSecretReader) -> dict[str, Any]:
        """`body` with the module its url serves recorded. A plugin without `sha256` is named by that
        digest; for one with `sha256` the record lets the builder say in the plugin's status when the
        module does not match it or cannot be fetched (the edge, which serves it, writes no status)."""
        spec = body.get("spec")
        spec = spec if isinstance(spec, Mapping) else {}
        url = spec.get("url")
        if not isinstance(url, str) or not url:
            # Nothing to resolve: the translator reports the missing url.
            return with_resolved(body, None)
        return with_resolved(body, await self._resolve(body, spec, url, pull_secret))

    async def _resolve(
        self, body: Mapping[str, Any], spec: Mapping[str, Any], url: str, pull_secret: PullSecretReader
    ) -> ResolvedModule:
        name = _plugin_name(body)
        policy = pull_policy(spec.get("imagePullPolicy"), url)
        secret_name = spec.get("imagePullSecret")
        cache_key = f"{url}\n{secret_name or ''}"
        known = self._found.get(cache_key)
        if policy == IF_NOT_PRESENT and known is not None:
            return known
        try:
            credentials = await _credentials(url, name, secret_name, pull_secret)
            module = await self.fetcher.fetch(url, credentials=credentials)
        except ModuleFetchError as exc:
            if known is not None:
                # An unreachable source changes nothing (docs/design.md §4): the last digest seen stays.
                log.warning(
                    "WasmPlugin %s: %s; keeping the digest resolved before, %s", name, exc, known.sha256
                )
                return known
            log.warning("WasmPlugin %s: module digest not resolved: %s", name, exc)
            return ResolvedModule(error=str(exc))
        resolved = ResolvedModule(sha256=module.sha256, url=module.url)
        self._found[cache_key] = resolved
        log.info("WasmPlugin %s: module %s is sha256 %s (%s)", name, url, module.sha256, module.url)
        return resolved


async def _credentials(
    url: str, plugin: str, secret_name: object, pull_secret: PullSecretReader
) -> Credentials | None:
    if not isinstance(secret_name, str) or not secret_name or scheme_of(url) != "oci":
        return None
    namespace = plugin.split("/", 1)[0]
    data = await pull_secret(namespace, secret_name)
    if data is None:
        raise ModuleFetchError(
            f"imagePullSecret {namespace}/{secret_name} is not known (no such Secret, or its namespace is not"
            " watched, or it has no .dockerconfigjson)",
            "unauthorized",
        )
    config = DockerConfig.parse(data, what=f"imagePullSecret {namespace}/{secret_name}")
    return config.for_registry(parse_image(url).registry)


def _plugin_name(body: Mapping[str, Any]) -> str:
    metadata = body.get("metadata")
    metadata = metadata if isinstance(metadata, Mapping) else {}
    return f"{metadata.get('namespace') or 'default'}/{metadata.get('name') or '?'}"


def docker_config_of_secret(body: Mapping[str, Any]) -> bytes | None:
    """The `.dockerconfigjson` (or legacy `.dockercfg`) of a Kubernetes Secret body, decoded; None when
    it holds neither."""
    for field, key in (("data", ".dockerconfigjson"), ("data", ".dockercfg")):
        data = body.get(field)
        if isinstance(data, Mapping) and isinstance(data.get(key), str):
            try:
                return base64.b64decode(data[key])
            except (binascii.Error, ValueError):
                return None
    string_data = body.get("stringData")
    if isinstance(string_data, Mapping) and isinstance(string_data.get(".dockerconfigjson"), str):
        return str(string_data[".dockerconfigjson"]).encode()
    return None
