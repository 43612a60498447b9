"""Parsing a module URL: `oci://registry/repository[:tag|@sha256:digest]`, `http(s)://...`,
`file:///path`. Anything else is refused with the reason."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from xdsbus.wasm.errors import ModuleFetchError

OCI_SCHEME = "oci"
SCHEMES = ("oci", "http", "https", "file")
DEFAULT_TAG = "latest"

# The OCI distribution spec's grammar for repository names and tags.
_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class ImageRef:
    """An OCI image: registry host[:port], repository, and a tag or a digest (`sha256:<hex>`)."""

    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def reference(self) -> str:
        """What the manifest endpoint is asked for: the digest when pinned, else the tag."""
        return self.digest or self.tag

    def pinned(self, digest: str) -> ImageRef:
        """The same image named by manifest digest: it always names the same bytes."""
        return ImageRef(self.registry, self.repository, digest=digest)

    @property
    def url(self) -> str:
        """The `oci://` URL of this reference."""
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}"
        return f"oci://{self.registry}/{self.repository}{suffix}"

    @property
    def plain_http(self) -> bool:
        """Whether the registry is spoken to without TLS: only a loopback one, as docker and
        go-containerregistry do for localhost."""
        host = urlsplit(f"//{self.registry}").hostname or ""
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False


def scheme_of(url: str) -> str:
    """The scheme of a module URL, lower case (`oci` when it has none, as in Higress); ModuleFetchError
    for one no fetcher speaks."""
    if "://" not in url:
        # Higress's default scheme: `registry/repository:tag` is an image.
        return OCI_SCHEME
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        shown = scheme or "none"
        raise ModuleFetchError(
            f"module url {url!r}: scheme {shown!r} is not one of oci://, http://, https://, file://",
            "bad_url",
        )
    return scheme


def parse_image(url: str) -> ImageRef:
    """An `oci://` URL as an image reference; the tag defaults to `latest` as in docker."""
    rest = url.split("://", 1)[1] if "://" in url else url
    registry, slash, path = rest.partition("/")
    if not registry or not slash or not path:
        raise ModuleFetchError(
            f"module url {url!r}: expected oci://registry/repository[:tag|@digest]", "bad_url"
        )
    digest = ""
    tag = ""
    if "@" in path:
        path, digest = path.split("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise ModuleFetchError(f"module url {url!r}: digest {digest!r} is not sha256:<64 hex>", "bad_url")
    else:
        last = path.rsplit("/", 1)[-1]
        if ":" in last:
            path, tag = path.rsplit(":", 1)
            if not _TAG.fullmatch(tag):
                raise ModuleFetchError(f"module url {url!r}: invalid tag {tag!r}", "bad_url")
        else:
            tag = DEFAULT_TAG
    if not _REPOSITORY.fullmatch(path):
        raise ModuleFetchError(f"module url {url!r}: invalid repository name {path!r}", "bad_url")
    return ImageRef(registry=registry.lower(), repository=path, tag=tag, digest=digest)
