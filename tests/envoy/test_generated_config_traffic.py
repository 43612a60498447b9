"""The generated features behave as the route model says, through a real Envoy serving a static bootstrap
of the generated resources in front of echo backends: error pages, source ranges, CORS, header mutations,
retries, mirrors, fallbacks, session cookies, redirects and SNI chains with client certificates."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.envoy_config import EnvoyConfig, self_signed, static_bootstrap, write_json
from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    DownstreamTls,
    ErrorPages,
    HashKind,
    HashPolicy,
    HeaderMutation,
    HttpsListenerModel,
    LbAlgorithm,
    ListenerModel,
    Mirror,
    PathKind,
    PathMatch,
    Redirect,
    RetryPolicy,
    Rewrite,
    Route,
    RouteOrigin,
    StringMatchKind,
    TlsFilterChainModel,
    UpstreamPolicy,
    VirtualHostModel,
)
from xdsbus.model.secrets import SecretModel, TlsCertificate
from xdsbus.model.services import ServiceModel, ServicePort, cluster_name
from xdsbus.translate import envoy_listeners, envoy_secrets
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.harness import http
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import eventually, free_port, tool

pytestmark = pytest.mark.slow

ORIGIN = RouteOrigin(created="2024-01-01T00:00:00Z", kind="Ingress", key="default/traffic")
BACKENDS = ("web", "errors", "backup", "empty")
HOST = "app.test"


def host(name: str) -> str:
    return f"{name}.default.svc.cluster.local"


def dest(name: str, **kwargs: object) -> Destination:
    return Destination(hostname=host(name), port=80, **kwargs)  # type: ignore[arg-type]


def prefix(value: str) -> PathMatch:
    return PathMatch(kind=PathKind.PREFIX, value=value)


def routes() -> tuple[Route, ...]:
    web = dest("web")
    return (
        Route(
            path=prefix("/pages/"),
            destinations=(web,),
            rewrite=Rewrite(prefix="/"),
            error_pages=ErrorPages(codes=(404, 503), destination=dest("errors")),
            origin=ORIGIN,
        ),
        Route(
            path=prefix("/private"), destinations=(web,), allow_source_ranges=("10.0.0.0/8",), origin=ORIGIN
        ),
        Route(path=prefix("/open"), destinations=(web,), allow_source_ranges=("127.0.0.1",), origin=ORIGIN),
        Route(
            path=prefix("/headers"),
            destinations=(dest("web", request_headers=HeaderMutation(add=(("x-dest", "d"),))),),
            request_headers=HeaderMutation(
                set=(("x-set", "50%"), ("host", "rewritten.test")), remove=("x-drop",)
            ),
            response_headers=HeaderMutation(add=(("x-resp", "r"),)),
            origin=ORIGIN,
        ),
        Route(
            path=prefix("/cors"),
            destinations=(web,),
            cors=CorsPolicy(
                allow_origins=((StringMatchKind.SUFFIX, ".example.com"),),
                allow_methods=("GET", "PUT"),
                max_age_seconds=60,
            ),
            origin=ORIGIN,
        ),
        Route(
            path=prefix("/retry"),
            destinations=(web,),
            retry=RetryPolicy(
                attempts=3, retry_on=("retriable-status-codes",), retriable_status_codes=(503,)
            ),
            origin=ORIGIN,
        ),
        Route(
            path=prefix("/mirror"),
            destinations=(web,),
            mirrors=(Mirror(destination=dest("backup")),),
            origin=ORIGIN,
        ),
        Route(
            path=prefix("/fallback"), destinations=(dest("empty", fallback=dest("backup")),), origin=ORIGIN
        ),
        Route(
            path=prefix("/sticky"),
            destinations=(dest("web", policy=UpstreamPolicy(lb=LbAlgorithm.RING_HASH)),),
            hash_policies=(HashPolicy(kind=HashKind.COOKIE, name="sticky", generate_cookie=True),),
            origin=ORIGIN,
        ),
        Route(path=prefix("/zero"), destinations=(dest("web", weight=0),), origin=ORIGIN),
        Route(
            path=prefix("/old"),
            redirect=Redirect(scheme="https", host="new.test", prefix="/new", code=301),
            origin=ORIGIN,
        ),
        Route(path=prefix("/teapot"), direct_status=418, direct_body="short and stout", origin=ORIGIN),
        Route(
            path=PathMatch(kind=PathKind.EXACT, value="/only-get"),
            methods=("GET", "HEAD"),
            ignore_case=True,
            destinations=(web,),
            rewrite=Rewrite(path="/replaced"),
            origin=ORIGIN,
        ),
    )


@dataclass
class Gateway:
    http_port: int
    https_port: int
    ca: ssl.SSLContext
    cert: TlsCertificate
    backends: dict[str, EchoServer]

    async def get(self, target: str, headers: dict[str, str] | None = None) -> http.Response:
        return await http.get("127.0.0.1", self.http_port, target, host_header=HOST, headers=headers)


def start_envoy(bootstrap: Path, log: Path) -> subprocess.Popen[bytes]:
    """Envoy on a static bootstrap, its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                tool("envoy"),
                "-c",
                str(bootstrap),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    backends = {
        name: await EchoServer(EchoIdentity(pod=f"{name}-pod", service=name)).start()
        for name in BACKENDS
        if name != "empty"
    }
    http_port, https_port, admin_port = free_port(), free_port(), free_port()
    config = EnvoyConfig()
    services = {
        host(name): ServiceModel(hostname=host(name), ports=(ServicePort(number=80),)) for name in BACKENDS
    }
    config.add_services(list(services.values()))
    model = routes()
    config.add_derived(model, services.get)

    plain = envoy_listeners.http_route_config_name(http_port)
    listener = ListenerModel(
        name=envoy_listeners.listener_name(http_port), port=http_port, route_config=plain
    )
    config.listeners[listener.name] = envoy_listeners.build_http_listener(listener)
    config.add_route_config(plain, [VirtualHostModel(name=HOST, domains=(HOST,), routes=model)])

    cert = self_signed("app.test", ("app.test", "mtls.test"))
    open_chain = envoy_listeners.https_route_config_name(https_port, "app")
    mtls_chain = envoy_listeners.https_route_config_name(https_port, "mtls")
    tls = HttpsListenerModel(
        name=envoy_listeners.listener_name(https_port),
        port=https_port,
        chains=(
            TlsFilterChainModel(
                server_names=("app.test",), tls=DownstreamTls(cert_secret="cert"), route_config=open_chain
            ),
            TlsFilterChainModel(
                server_names=("mtls.test",),
                tls=DownstreamTls(cert_secret="cert", client_ca_secret="ca"),
                route_config=mtls_chain,
            ),
        ),
    )
    config.listeners[tls.name] = envoy_listeners.build_https_listener(tls)
    config.add_route_config(open_chain, [VirtualHostModel(name="app", domains=(HOST,), routes=model)])
    config.add_route_config(mtls_chain, [VirtualHostModel(name="mtls", domains=("mtls.test",), routes=model)])
    for secret in (
        SecretModel(name="cert", certificate=cert),
        SecretModel(name="ca", trusted_ca=cert.cert_chain),
    ):
        config.secrets[secret.name] = envoy_secrets.build_secret(secret)

    endpoints = {
        cluster_name(80, host(name)): [("127.0.0.1", server.port)] for name, server in backends.items()
    }
    path = write_json(tmp_path / "bootstrap.json", static_bootstrap(config, admin_port, endpoints))
    proc = start_envoy(path, tmp_path / "envoy.log")
    try:
        await http.wait_listening(http_port, timeout=20)
        await http.wait_listening(https_port, timeout=20)
        ca = ssl.create_default_context(cadata=cert.cert_chain.decode())
        yield Gateway(http_port=http_port, https_port=https_port, ca=ca, cert=cert, backends=backends)
    finally:
        await terminate_process(proc)
        for server in backends.values():
            await server.stop()


async def test_error_pages_come_from_the_error_backend_with_the_original_status(gateway: Gateway) -> None:
    ok = await gateway.get("/pages/health")
    assert ok.status == 200
    page = await gateway.get("/pages/status/404")
    assert page.status == 404, page.text
    body = page.json()
    assert body["service"] == "errors"
    assert body["path"] == "/"
    assert body["headers"]["X-Code"] == ["404"]
    assert "X-Xdsbus-Error-Page" not in body["headers"]
    # A status without an error page passes through untouched.
    assert (await gateway.get("/pages/status/500")).status == 500


async def test_source_ranges_refuse_other_clients(gateway: Gateway) -> None:
    assert (await gateway.get("/private")).status == 403
    assert (await gateway.get("/open")).status == 200


async def test_header_mutations_on_route_and_destination(gateway: Gateway) -> None:
    response = await gateway.get("/headers", headers={"x-drop": "1", "x-set": "old"})
    body = response.json()
    assert body["headers"]["X-Set"] == ["50%"]
    assert body["headers"]["X-Dest"] == ["d"]
    assert "X-Drop" not in body["headers"]
    assert body["host"] == "rewritten.test"
    assert response.header("x-resp") == "r"


async def test_cors_preflight_is_answered_for_allowed_origins(gateway: Gateway) -> None:
    preflight = await http.request(
        "OPTIONS",
        "127.0.0.1",
        gateway.http_port,
        "/cors",
        host_header=HOST,
        headers={"origin": "https://a.example.com", "access-control-request-method": "PUT"},
    )
    assert preflight.status == 200
    assert preflight.header("access-control-allow-origin") == "https://a.example.com"
    assert preflight.header("access-control-allow-methods") == "GET,PUT"
    assert preflight.header("access-control-max-age") == "60"
    other = await gateway.get("/cors", headers={"origin": "https://evil.test"})
    assert other.header("access-control-allow-origin") is None


async def test_retries_on_listed_status_codes(gateway: Gateway) -> None:
    response = await gateway.get("/retry/x?uuid=one&succeedAfter=2&responseCode=503")
    assert response.status == 200


async def test_mirror_copies_requests(gateway: Gateway) -> None:
    before = gateway.backends["backup"].requests_served
    assert (await gateway.get("/mirror")).json()["service"] == "web"

    async def mirrored() -> bool:
        return gateway.backends["backup"].requests_served > before

    await eventually(mirrored)


async def test_fallback_serves_when_the_primary_has_no_endpoint(gateway: Gateway) -> None:
    response = await gateway.get("/fallback")
    assert response.status == 200, response.text
    assert response.json()["service"] == "backup"


async def test_session_cookie_is_generated_for_consistent_hashing(gateway: Gateway) -> None:
    response = await gateway.get("/sticky")
    assert response.status == 200
    cookie = response.header("set-cookie") or ""
    assert cookie.startswith("sticky="), response.headers
    assert "max-age" not in cookie.lower(), "ttl 0: a session cookie"


async def test_local_answers(gateway: Gateway) -> None:
    assert (await gateway.get("/zero")).status == 500
    teapot = await gateway.get("/teapot")
    assert (teapot.status, teapot.text) == (418, "short and stout")
    moved = await gateway.get("/old/page?q=1")
    assert moved.status == 301
    assert moved.header("location") == "https://new.test/new/page?q=1"


async def test_methods_case_and_path_rewrite(gateway: Gateway) -> None:
    response = await gateway.get("/ONLY-get")
    assert response.status == 200
    assert response.json()["path"] == "/replaced"
    posted = await http.request("POST", "127.0.0.1", gateway.http_port, "/only-get", host_header=HOST)
    assert posted.status == 404


def _tls_get(port: int, server_name: str, ca: ssl.SSLContext, client: Path | None = None) -> bytes:
    """A blocking GET over TLS: asyncio's TLS transport trips over a handshake the server refuses."""
    context = ca
    if client is not None:
        context = ssl.create_default_context(cafile=str(client))
        context.load_cert_chain(str(client))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as conn:
            conn.sendall(f"GET /open HTTP/1.1\r\nHost: {server_name}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
            return data


async def test_sni_chains_and_client_certificates(gateway: Gateway, tmp_path: Path) -> None:
    response = await http.request(
        "GET",
        "127.0.0.1",
        gateway.https_port,
        "/open",
        host_header=HOST,
        tls=gateway.ca,
        server_name="app.test",
    )
    assert response.status == 200
    assert response.json()["service"] == "web"
    # The mutual TLS chain: served with a certificate its CA signed, refused without one.
    pem = tmp_path / "client.pem"
    pem.write_bytes(gateway.cert.cert_chain + gateway.cert.private_key)
    served = await asyncio.to_thread(_tls_get, gateway.https_port, "mtls.test", gateway.ca, pem)
    assert served.startswith(b"HTTP/1.1 200"), served[:200]
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await asyncio.to_thread(_tls_get, gateway.https_port, "mtls.test", gateway.ca)
