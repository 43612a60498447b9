"""Bounded HTTP GETs for module fetches: a response larger than the limit is refused while it is read,
never buffered whole, and every failure becomes a ModuleFetchError naming the URL."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp

from xdsbus.wasm.errors import ModuleFetchError

# Larger than any proxy-wasm module seen in practice (Higress's biggest plugins are a few MiB).
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_CHUNK = 64 * 1024


class Response:
    """What a GET answered: status, headers and (for 2xx) the body."""

    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


async def get(
    session: aiohttp.ClientSession,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    what: str = "",
) -> Response:
    """GET `url`; the body is read only for a 2xx answer, and at most `max_bytes` of it."""
    label = what or url
    try:
        async with session.get(url, headers=dict(headers or {})) as resp:
            body = b""
            if 200 <= resp.status < 300:
                if resp.content_length is not None and resp.content_length > max_bytes:
                    raise ModuleFetchError(
                        f"{label}: {resp.content_length} bytes, more than the limit of {max_bytes}",
                        "too_large",
                    )
                chunks = bytearray()
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    chunks += chunk
                    if len(chunks) > max_bytes:
                        raise ModuleFetchError(
                            f"{label}: more than the limit of {max_bytes} bytes", "too_large"
                        )
                body = bytes(chunks)
            return Response(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)
    except ModuleFetchError:
        raise
    except TimeoutError as exc:
        raise ModuleFetchError(f"{label}: timed out", "unreachable") from exc
    except aiohttp.ClientError as exc:
        raise ModuleFetchError(f"{label}: {exc or type(exc).__name__}", "unreachable") from exc


def status_error(label: str, status: int) -> ModuleFetchError:
    """The error for an HTTP status that is not a success."""
    reason = {401: "unauthorized", 403: "unauthorized", 404: "not_found"}.get(status, "unreachable")
    return ModuleFetchError(f"{label}: HTTP {status}", reason)
