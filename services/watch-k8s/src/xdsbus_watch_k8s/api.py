"""Raw JSON access to the Kubernetes API through kubernetes_asyncio's ApiClient.

The ApiClient brings what a client needs from a kubeconfig or the pod's service account (TLS, client
certificates, bearer tokens and their refresh, proxies); this module only sends requests through it and
reads the answers as plain JSON data. Typed models are skipped on purpose: building thousands of model
objects is slow and drops fields the models do not know (every CRD field, newer API fields).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from kubernetes_asyncio import client, config

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)


class ApiError(Exception):
    """A request the API server refused, or a Status it sent in a watch stream."""

    def __init__(self, status: int, reason: str = "", message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if reason or message else str(status))
        self.status = status
        self.reason = reason
        self.message = message


class Gone(ApiError):
    """410: the resourceVersion (or a list's continue token) is older than the server keeps."""


class NotFound(ApiError):
    """404: the resource is not served (a CRD not installed), or the object does not exist."""


class ConfigError(Exception):
    """No usable cluster configuration."""


def error_from_status(status: int, body: bytes | Mapping[str, Any]) -> ApiError:
    """The ApiError for an HTTP status and a (possibly Status-shaped) body."""
    reason = message = ""
    data: Any = body
    if isinstance(body, bytes):
        try:
            data = msgspec.json.decode(body)
        except msgspec.DecodeError:
            data = {"message": body[:200].decode(errors="replace")}
    if isinstance(data, Mapping):
        reason = str(data.get("reason") or "")
        message = str(data.get("message") or "")
    if status == 410:
        return Gone(status, reason, message)
    if status == 404:
        return NotFound(status, reason, message)
    return ApiError(status, reason, message)


def _check_source(kubeconfig: str | None) -> None:
    """Fail early, with a clear message, when there is nothing to load a configuration from."""
    if kubeconfig:
        if not any(Path(p).expanduser().is_file() for p in kubeconfig.split(os.pathsep) if p):
            raise ConfigError(f"kubeconfig {kubeconfig!r} does not exist")
    elif not ((SERVICE_ACCOUNT_DIR / "token").is_file() and os.environ.get("KUBERNETES_SERVICE_HOST")):
        raise ConfigError(
            "no cluster configuration: give --kubeconfig (or KUBECONFIG), or run in a pod with a "
            "service account"
        )


async def load_configuration(kubeconfig: str | None) -> client.Configuration:
    """The cluster to talk to: from `kubeconfig` when given (a path, or a KUBECONFIG-style list of paths
    merged as kubectl does), else in-cluster from the pod's service account."""
    _check_source(kubeconfig)
    configuration = client.Configuration()
    try:
        if kubeconfig:
            await config.load_kube_config(
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
        else:
            config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException as exc:
        raise ConfigError(str(exc)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read the cluster configuration: {exc}") from exc
    return configuration


class KubeApi:
    """Requests to one API server, answered as JSON data."""

    def __init__(self, configuration: client.Configuration, user_agent: str) -> None:
        self._client = client.ApiClient(configuration)
        self._client.user_agent = user_agent

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._client.close()

    async def __aenter__(self) -> KubeApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _request(
        self,
        method: str,
        path: str,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout = _REQUEST_TIMEOUT,
    ) -> aiohttp.ClientResponse:
        response: aiohttp.ClientResponse = await self._client.call_api(
            path,
            method,
            query_params=list(params),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        return response

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        """GET a JSON document; raises ApiError (Gone, NotFound) for an error status."""
        response = await self._request("GET", path, params)
        async with response:
            data = await response.read()
            if response.status != 200:
                raise error_from_status(response.status, data)
        decoded = msgspec.json.decode(data)
        if not isinstance(decoded, dict):
            raise ApiError(response.status, "BadResponse", f"GET {path} did not return an object")
        return decoded

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> None:
        """PATCH with a JSON merge patch; raises ApiError for an error status."""
        response = await self._request("PATCH", path, body=patch, content_type="application/merge-patch+json")
        async with response:
            data = await response.read()
            if not 200 <= response.status < 300:
                raise error_from_status(response.status, data)

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, params: Sequence[tuple[str, str]], read_timeout: float
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """Open a watch; yields the body to read line by line. An error status raises ApiError.

        `read_timeout` bounds the silence between two reads, so a connection that died without a word
        (a node gone, a NAT entry dropped) is noticed."""
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=read_timeout)
        response = await self._request("GET", path, params, timeout=timeout)
        async with response:
            if response.status != 200:
                raise error_from_status(response.status, await response.read())
            yield response.content
