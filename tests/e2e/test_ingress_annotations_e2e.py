"""Higress Ingress annotations end to end (one Stack for the module, one host per case): what a client
sees through Envoy and what the echo backends receive, for every annotation family but canary (see
test_ingress_canary_e2e.py). Both prefixes are used; where both are set, nginx's wins."""

from __future__ import annotations

import asyncio
import base64
import ssl
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import (
    Expect,
    IngressPath,
    add_service,
    count_pods,
    ingress,
    ingress_status,
    request,
    simple,
    wait_all,
    wait_statuses,
    wait_warning,
)
from xdsbus_dev.echo import server_context
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.envoy import Envoy
from xdsbus_dev.harness.stack import Stack, edge_installed, service_manifest, tls_secret_manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

N = "nginx.ingress.kubernetes.io/"
H = "higress.io/"
A = "echo-a"
MTLS = "mtls.example.com"
CLUSTERS_DUMP = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
ROUTES_DUMP = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"


def _ingresses() -> list[dict[str, Any]]:
    return [
        # -- rewrite ---------------------------------------------------------------------------------
        ingress(
            "rewrite",
            {"rewrite.example.com": [IngressPath("/api(/|$)(.*)", A, "ImplementationSpecific")]},
            annotations={N + "rewrite-target": "/$2", N + "use-regex": "true"},
        ),
        ingress(
            "rewrite-prefix",
            {"rewrite2.example.com": [IngressPath("/old", A)]},
            annotations={H + "rewrite-target": "/new/"},
        ),
        ingress(
            "rewrite-path",
            {"rewritepath.example.com": [IngressPath("/v1", A)]},
            annotations={H + "rewrite-path": "/v2"},
        ),
        ingress(
            "full-regex",
            {"fullregex.example.com": [IngressPath("/item/[0-9]+", A, "ImplementationSpecific")]},
            annotations={H + "full-path-regex": "true"},
        ),
        simple(
            "vhost",
            "vhost.example.com",
            A,
            **{N + "upstream-vhost": "nginx.internal", H + "upstream-vhost": "higress.internal"},
        ),
        # -- redirects -------------------------------------------------------------------------------
        simple("approot", "approot.example.com", A, **{N + "app-root": "/app"}),
        simple(
            "permanent",
            "permanent.example.com",
            A,
            **{
                N + "permanent-redirect": "https://new.example.com/landing",
                N + "permanent-redirect-code": "308",
            },
        ),
        simple("moved", "moved.example.com", A, **{H + "permanent-redirect": "https://moved.example.org"}),
        simple(
            "temporal",
            "temporal.example.com",
            A,
            **{H + "temporal-redirect": "http://maint.example.com/down"},
        ),
        simple("force", "force.example.com", A, **{N + "force-ssl-redirect": "true"}),
        simple("sslredirect", "sslredirect.example.com", A, **{N + "ssl-redirect": "true"}),
        # -- CORS, timeout, retries ------------------------------------------------------------------
        simple(
            "cors",
            "cors.example.com",
            A,
            **{
                N + "enable-cors": "true",
                N + "cors-allow-origin": "https://app.example.com, https://*.trusted.org",
                N + "cors-allow-methods": "GET, POST",
                N + "cors-allow-headers": "X-Token",
                N + "cors-expose-headers": "X-Resp",
                N + "cors-max-age": "600",
            },
        ),
        simple("timeout", "timeout.example.com", A, **{H + "timeout": "1"}),
        simple("retry", "retry.example.com", A, **{N + "proxy-next-upstream-tries": "3"}),
        simple("retryoff", "retryoff.example.com", A, **{N + "proxy-next-upstream": "off"}),
        simple(
            "retry502",
            "retry502.example.com",
            A,
            **{N + "proxy-next-upstream": "http_502", N + "proxy-next-upstream-tries": "1"},
        ),
        # -- load balancing --------------------------------------------------------------------------
        simple("hash", "hash.example.com", "echo-h", **{N + "upstream-hash-by": "$http_x_user"}),
        simple("sticky", "sticky.example.com", "echo-h", **{N + "affinity": "cookie"}),
        simple(
            "sticky-custom",
            "sticky2.example.com",
            "echo-h",
            **{
                N + "affinity": "cookie",
                N + "session-cookie-name": "route",
                N + "session-cookie-path": "/app",
                N + "session-cookie-max-age": "3600",
            },
        ),
        simple("lb", "lb.example.com", "echo-h", **{H + "load-balance": "least_conn"}),
        # -- access control and headers --------------------------------------------------------------
        simple("allow", "allow.example.com", A, **{N + "whitelist-source-range": "127.0.0.1/32"}),
        simple("deny", "deny.example.com", A, **{H + "whitelist-source-range": "10.0.0.0/8, 192.168.0.0/16"}),
        simple(
            "headers",
            "headers.example.com",
            A,
            **{
                H + "request-header-control-add": 'X-Added one\nX-Second "two words"',
                H + "request-header-control-update": "X-Replace new",
                H + "request-header-control-remove": "X-Drop",
                H + "response-header-control-add": "X-Resp-Added yes",
                H + "response-header-control-update": "X-Echoed replaced",
                H + "response-header-control-remove": "X-Content-Type-Options",
            },
        ),
        simple("mirror", "mirror.example.com", A, **{N + "mirror-target-service": "echo-m"}),
        # -- downstream TLS: client certificates from the host's own CA, TLS 1.3 only --------------
        _mtls_ingress(),
        # -- upstream protocol -----------------------------------------------------------------------
        simple("h2", "h2.example.com", A, **{N + "backend-protocol": "HTTP2"}),
        simple("https", "https.example.com", "echo-s", **{N + "backend-protocol": "HTTPS"}),
        simple(
            "https-sni",
            "httpssni.example.com",
            "echo-s",
            **{
                H + "backend-protocol": "https",
                H + "proxy-ssl-server-name": "on",
                H + "proxy-ssl-name": "backend.internal",
            },
        ),
        simple("plain-to-tls", "plaintls.example.com", "echo-s"),
        # -- fallback and error pages ----------------------------------------------------------------
        simple(
            "errors",
            "errors.example.com",
            A,
            **{N + "default-backend": "echo-err", N + "custom-http-errors": "404,503"},
        ),
        simple("fallback", "fallback.example.com", "echo-none", **{H + "default-backend": "echo-err"}),
        # -- match conditions ------------------------------------------------------------------------
        simple("method", "method.example.com", A, **{H + "match-method": "GET"}),
        simple(
            "match",
            "match.example.com",
            A,
            **{
                H + "exact-match-header-x-env": "prod",
                H + "prefix-match-header-x-ver": "v1",
                H + "regex-match-query-id": "[0-9]+",
            },
        ),
        simple("match-any", "match.example.com", "echo-b"),
        ingress(
            "case",
            {"case.example.com": [IngressPath("/Foo", A)]},
            annotations={N + "ignore-path-case": "true"},
        ),
        # -- values that cannot be used --------------------------------------------------------------
        simple(
            "invalid",
            "invalid.example.com",
            A,
            **{
                H + "timeout": "x",
                N + "whitelist-source-range": "nope",
                N + "load-balance": "fastest",
                N + "proxy-next-upstream-tries": "many",
            },
        ),
    ]


def _mtls_ingress() -> dict[str, Any]:
    out = simple(
        "mtls",
        MTLS,
        A,
        **{N + "auth-tls-secret": "demo/mtls-tls", H + "tls-min-protocol-version": "TLSv1.3"},
    )
    out["spec"]["tls"] = [{"hosts": [MTLS], "secretName": "mtls-tls"}]
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    workdir = tmp_path_factory.mktemp("annotations")
    ca = TestCA()
    pair = ca.issue("echo-s.demo.svc.cluster.local")
    mtls = ca.issue(MTLS)
    mtls_secret = tls_secret_manifest("mtls-tls", mtls.cert_pem, mtls.key_pem)
    mtls_secret["data"]["ca.crt"] = base64.b64encode(ca.cert_pem).decode()
    (workdir / "echo-s.crt").write_bytes(pair.cert_pem)
    (workdir / "echo-s.key").write_bytes(pair.key_pem)
    async with Stack(workdir, edges=1, backends=("echo-a", "echo-b", "echo-m", "echo-err")) as stack:
        hashed = await add_service(stack, "echo-h", 3)
        secure = await add_service(
            stack, "echo-s", tls=server_context(str(workdir / "echo-s.crt"), str(workdir / "echo-s.key"))
        )
        # A Service with no endpoint at all.
        empty = service_manifest("echo-none", 1)
        stack.write("services.yaml", [*hashed.manifests(), *secure.manifests(), empty, mtls_secret])
        stack.write("ingresses.yaml", _ingresses())
        await wait_all(
            stack,
            [
                Expect("rewrite.example.com", "/api/x", pod=A),
                Expect("vhost.example.com", pod=A),
                Expect("approot.example.com", status=302),
                Expect("force.example.com", status=308),
                Expect("hash.example.com", pod="echo-h"),
                Expect("sticky.example.com", pod="echo-h"),
                Expect("lb.example.com", pod="echo-h"),
                Expect("deny.example.com", status=403),
                Expect("https.example.com", pod="echo-s"),
                Expect("httpssni.example.com", pod="echo-s"),
                Expect("fallback.example.com", pod="echo-err"),
                Expect("match.example.com", pod="echo-b"),
                Expect("invalid.example.com", pod=A),
            ],
        )
        stack.ca = ca  # type: ignore[attr-defined]
        yield stack


def _body(response: Any) -> dict[str, Any]:
    assert response.status == 200, (response.status, response.text[:300])
    return dict(response.json())


# -- rewrite ------------------------------------------------------------------------------------------


async def test_rewrite_target_with_capture_groups(stack: Stack) -> None:
    host = "rewrite.example.com"
    assert _body(await request(stack, host, "/api/v1/users?x=1"))["path"] == "/v1/users?x=1"
    assert _body(await request(stack, host, "/api"))["path"] == "/"
    assert _body(await request(stack, host, "/api/"))["path"] == "/"
    # `(/|$)` must follow /api.
    assert (await request(stack, host, "/apix")).status == 404


async def test_rewrite_target_of_a_prefix(stack: Stack) -> None:
    host = "rewrite2.example.com"
    assert _body(await request(stack, host, "/old/x/y?q=2"))["path"] == "/new/x/y?q=2"
    assert _body(await request(stack, host, "/old"))["path"] == "/new/"
    assert (await request(stack, host, "/older")).status == 404


async def test_rewrite_path_and_full_path_regex(stack: Stack) -> None:
    assert _body(await request(stack, "rewritepath.example.com", "/v1/x?k=v"))["path"] == "/v2/x?k=v"
    assert _body(await request(stack, "rewritepath.example.com", "/v1"))["path"] == "/v2"
    # The whole path must match the regex.
    assert _body(await request(stack, "fullregex.example.com", "/item/42"))["path"] == "/item/42"
    assert (await request(stack, "fullregex.example.com", "/item/42/more")).status == 404
    assert (await request(stack, "fullregex.example.com", "/item/x")).status == 404


async def test_upstream_vhost_nginx_prefix_wins(stack: Stack) -> None:
    body = _body(await request(stack, "vhost.example.com", "/v"))
    assert (body["host"], body["path"]) == ("nginx.internal", "/v")


# -- redirects ----------------------------------------------------------------------------------------


async def test_app_root(stack: Stack) -> None:
    response = await request(stack, "approot.example.com", "/")
    assert (response.status, response.header("location")) == (302, "http://approot.example.com/app")
    assert _body(await request(stack, "approot.example.com", "/app/page"))["path"] == "/app/page"


async def test_permanent_and_temporal_redirects(stack: Stack) -> None:
    response = await request(stack, "permanent.example.com", "/any/path")
    assert (response.status, response.header("location")) == (308, "https://new.example.com/landing")
    # Default code 301; a URL without a path keeps the request's.
    response = await request(stack, "moved.example.com", "/keep/me")
    assert (response.status, response.header("location")) == (301, "https://moved.example.org/keep/me")
    response = await request(stack, "temporal.example.com", "/x")
    assert (response.status, response.header("location")) == (302, "http://maint.example.com/down")


async def test_ssl_redirects(stack: Stack) -> None:
    # force-ssl-redirect redirects even though the host has no certificate here.
    response = await request(stack, "force.example.com", "/x?y=1")
    assert (response.status, response.header("location")) == (308, "https://force.example.com/x?y=1")
    # ssl-redirect only applies to hosts served over TLS.
    assert _body(await request(stack, "sslredirect.example.com", "/x"))["pod"].startswith(A)


# -- CORS ---------------------------------------------------------------------------------------------


async def test_cors_preflight_and_simple_requests(stack: Stack) -> None:
    host = "cors.example.com"
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"}
    response = await request(stack, host, "/r", method="OPTIONS", headers=preflight)
    assert response.status == 200
    assert response.header("access-control-allow-origin") == "https://app.example.com"
    assert response.header("access-control-allow-methods") == "GET,POST"
    assert response.header("access-control-allow-headers") == "X-Token"
    assert response.header("access-control-max-age") == "600"
    # cors-allow-credentials defaults to true.
    assert response.header("access-control-allow-credentials") == "true"
    # Preflights are answered by the gateway, not the backend.
    assert response.header("content-type") != "application/json"

    wildcard = {**preflight, "Origin": "https://eu.trusted.org"}
    response = await request(stack, host, "/r", method="OPTIONS", headers=wildcard)
    assert response.header("access-control-allow-origin") == "https://eu.trusted.org"

    evil = {**preflight, "Origin": "https://evil.example.net"}
    response = await request(stack, host, "/r", method="OPTIONS", headers=evil)
    assert response.header("access-control-allow-origin") is None
    # A refused origin's preflight is answered by the gateway too: the backend never sees it.
    assert response.header("content-type") != "application/json"

    response = await request(stack, host, "/r", headers={"Origin": "https://app.example.com"})
    assert _body(response)["method"] == "GET"
    assert response.header("access-control-allow-origin") == "https://app.example.com"
    assert response.header("access-control-expose-headers") == "X-Resp"


# -- timeout and retries ------------------------------------------------------------------------------


async def test_timeout(stack: Stack) -> None:
    host = "timeout.example.com"
    assert _body(await request(stack, host, "/?delay=100ms"))["path"] == "/?delay=100ms"
    response = await request(stack, host, "/?delay=2s")
    assert response.status == 504, response.text
    assert response.text == "upstream request timeout"


def _attempts(stack: Stack, marker: str) -> int:
    return sum(1 for r in stack.echoes["echo-a-7c9d5f-1"].log if marker in r.target)


async def test_retries(stack: Stack) -> None:
    first = uuid.uuid4().hex
    response = await request(
        stack, "retry.example.com", f"/retry/a?uuid={first}&succeedAfter=2&responseCode=503"
    )
    assert _body(response)["path"].startswith("/retry/a")
    assert _attempts(stack, first) == 3
    # Higress maps tries 3 to Istio attempts 3, which Envoy reads as 3 retries: 4 attempts in all.
    second = uuid.uuid4().hex
    response = await request(
        stack, "retry.example.com", f"/retry/b?uuid={second}&succeedAfter=9&responseCode=503"
    )
    assert response.status == 503
    assert _attempts(stack, second) == 4
    # off: the first failure is the answer.
    third = uuid.uuid4().hex
    response = await request(
        stack, "retryoff.example.com", f"/retry/c?uuid={third}&succeedAfter=1&responseCode=503"
    )
    assert response.status == 503
    assert _attempts(stack, third) == 1
    # http_502 retries that status only (no other 5xx), once here.
    fourth = uuid.uuid4().hex
    response = await request(
        stack, "retry502.example.com", f"/retry/d?uuid={fourth}&succeedAfter=1&responseCode=502"
    )
    assert response.status == 200
    assert _attempts(stack, fourth) == 2
    fifth = uuid.uuid4().hex
    response = await request(
        stack, "retry502.example.com", f"/retry/e?uuid={fifth}&succeedAfter=1&responseCode=503"
    )
    assert response.status == 503
    assert _attempts(stack, fifth) == 1


# -- load balancing -----------------------------------------------------------------------------------


async def test_upstream_hash_by_header(stack: Stack) -> None:
    host = "hash.example.com"
    counts = await count_pods(stack, host, "/", 20, headers={"X-User": "alice"})
    assert len(counts) == 1 and sum(counts.values()) == 20, counts
    # Every user sticks to one pod, and users are spread over the pods.
    chosen = set()
    for n in range(20):
        counts = await count_pods(stack, host, "/", 3, headers={"X-User": f"user-{n}"})
        assert len(counts) == 1, (n, counts)
        chosen |= set(counts)
    assert len(chosen) >= 2, chosen


async def test_cookie_affinity(stack: Stack) -> None:
    host = "sticky.example.com"
    first = await request(stack, host, "/")
    cookie = first.header("set-cookie") or ""
    name, _, rest = cookie.partition("=")
    assert name == "INGRESSCOOKIE", cookie
    value = rest.split(";")[0]
    assert value and "Path=/" in cookie
    pod = _body(first)["pod"]
    counts = await count_pods(stack, host, "/", 15, headers={"Cookie": f"INGRESSCOOKIE={value}"})
    assert counts == {pod: 15}
    # Cookie name, path and lifetime come from the annotations.
    custom = (await request(stack, "sticky2.example.com", "/app/x")).header("set-cookie") or ""
    assert custom.startswith("route=") and "; Max-Age=3600; Path=/app; HttpOnly" in custom, custom
    # Each client without the cookie gets one made from its address (port included), so new connections
    # spread over the pods.
    fresh = {_body(await request(stack, host, "/"))["pod"] for _ in range(12)}
    assert len(fresh) >= 2, fresh


async def _route_cluster(envoy: Envoy, host: str) -> str:
    dump = envoy.section(await envoy.config_dump(), ROUTES_DUMP)
    for config in dump.get("dynamic_route_configs", []):
        for vhost in config["route_config"].get("virtual_hosts", []):
            if host in vhost["domains"]:
                return str(vhost["routes"][-1]["route"]["cluster"])
    raise AssertionError(f"no virtual host for {host}")


async def _cluster(envoy: Envoy, name: str) -> dict[str, Any]:
    dump = envoy.section(await envoy.config_dump(), CLUSTERS_DUMP)
    for entry in dump.get("dynamic_active_clusters", []):
        if entry["cluster"]["name"] == name:
            return dict(entry["cluster"])
    raise AssertionError(f"no active cluster {name}")


async def test_load_balance_algorithm_reaches_the_cluster(stack: Stack) -> None:
    assert stack.envoy is not None
    cluster = await _cluster(stack.envoy, await _route_cluster(stack.envoy, "lb.example.com"))
    assert cluster["lb_policy"] == "LEAST_REQUEST"
    # It still balances over the three pods. Sequential requests leave every host idle, so least-request
    # picks one of two random hosts each time: 9 requests missed a pod about 8% of the time (3·(2/3)^9),
    # 40 requests miss one with odds of about 3·(2/3)^40 ≈ 3e-7.
    assert len(await count_pods(stack, "lb.example.com", "/", 40)) == 3


# -- access control, headers, mirror ------------------------------------------------------------------


async def test_whitelist_source_range(stack: Stack) -> None:
    assert _body(await request(stack, "allow.example.com", "/"))["pod"].startswith(A)
    response = await request(stack, "deny.example.com", "/")
    assert response.status == 403
    assert response.text == "RBAC: access denied"
    # The connection's address counts, not what the client claims.
    spoofed = await request(stack, "deny.example.com", "/", headers={"X-Forwarded-For": "10.1.2.3"})
    assert spoofed.status == 403


async def test_header_control(stack: Stack) -> None:
    response = await request(
        stack,
        "headers.example.com",
        "/h",
        headers=[
            ("X-Replace", "old"),
            ("X-Drop", "gone"),
            ("X-Added", "mine"),
            ("X-Echo-Set-Header", "X-Echoed:original,X-Kept:kept"),
        ],
    )
    seen = _body(response)["headers"]
    assert seen["X-Added"] == ["mine", "one"]
    assert seen["X-Second"] == ["two words"]
    assert seen["X-Replace"] == ["new"]
    assert "X-Drop" not in seen
    assert response.header("x-resp-added") == "yes"
    assert response.header("x-echoed") == "replaced"
    assert response.header("x-kept") == "kept"
    assert response.header("x-content-type-options") is None


async def test_mirror_copies_requests_to_the_target_service(stack: Stack) -> None:
    marker = uuid.uuid4().hex
    body = _body(await request(stack, "mirror.example.com", f"/mirror-me?id={marker}"))
    assert body["pod"] == "echo-a-7c9d5f-1"
    mirror = stack.echoes["echo-m-7c9d5f-1"]

    async def copied() -> list[tuple[str, str, str]]:
        return [(r.method, r.target, r.host) for r in mirror.log if marker in r.target]

    # The copy is sent in the background: it may arrive after the answer.
    assert await stack.wait(copied, timeout=10, what="the mirrored request") == [
        ("GET", f"/mirror-me?id={marker}", "mirror.example.com-shadow")
    ]


# -- downstream TLS -------------------------------------------------------------------------------------


async def test_client_certificates_and_minimum_tls_version(stack: Stack) -> None:
    ca: TestCA = stack.ca  # type: ignore[attr-defined]
    client = ca.issue("client.example.com", client=True)
    certs = stack.workdir / "client"
    certs.mkdir(exist_ok=True)
    (certs / "tls.crt").write_bytes(client.cert_pem)
    (certs / "tls.key").write_bytes(client.key_pem)
    with_cert = ca.client_context()
    with_cert.load_cert_chain(certs / "tls.crt", certs / "tls.key")

    async def served() -> dict[str, Any] | None:
        try:
            response = await stack.curl_tls("/m", MTLS, with_cert)
        except OSError:
            return None
        return response.json() if response.status == 200 else None

    body = await stack.wait(served, what="mTLS host served")
    assert (body["pod"], body["host"]) == ("echo-a-7c9d5f-1", MTLS)
    # No client certificate: the handshake (or the first read, in TLS 1.3) fails. The client may see the
    # connection drop while it reads the peer certificate (ValueError: handshake not done).
    with pytest.raises((OSError, asyncio.IncompleteReadError, http.HttpError, ValueError)):
        await stack.curl_tls("/m", MTLS, ca.client_context())
    # TLS 1.2 at most: refused.
    old = ca.client_context()
    old.load_cert_chain(certs / "tls.crt", certs / "tls.key")
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(OSError):
        await stack.curl_tls("/m", MTLS, old)


# -- upstream protocol --------------------------------------------------------------------------------


async def test_backend_protocol_http2(stack: Stack) -> None:
    body = _body(await request(stack, "h2.example.com", "/two?x=1", headers={"X-Probe": "h2"}))
    assert (body["proto"], body["pod"], body["path"]) == ("HTTP/2.0", "echo-a-7c9d5f-1", "/two?x=1")
    assert (body["method"], body["host"], body["headers"]["X-Probe"]) == ("GET", "h2.example.com", ["h2"])
    # Other hosts reach the same pod over HTTP/1.1.
    assert _body(await request(stack, "vhost.example.com", "/"))["proto"] == "HTTP/1.1"
    # The policy cluster of the route says so.
    assert stack.envoy is not None
    name = await _route_cluster(stack.envoy, "h2.example.com")
    assert name.startswith("outbound|80|p-") and name.endswith("|echo-a.demo.svc.cluster.local")
    options = (await _cluster(stack.envoy, name))["typed_extension_protocol_options"]
    http_options = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "http2_protocol_options" in http_options["explicit_http_config"]


async def test_backend_protocol_https(stack: Stack) -> None:
    body = _body(await request(stack, "https.example.com", "/secure?x=1"))
    assert (body["pod"], body["path"], body["host"]) == (
        "echo-s-7c9d5f-1",
        "/secure?x=1",
        "https.example.com",
    )
    assert body["tls"]["version"].startswith("TLSv1.")
    assert body["tls"]["serverName"] == ""
    body = _body(await request(stack, "httpssni.example.com", "/"))
    assert body["tls"]["serverName"] == "backend.internal"
    # Without the annotation Envoy speaks plain HTTP to the TLS port and gets nothing back.
    assert (await request(stack, "plaintls.example.com", "/")).status == 503


# -- fallback and error pages -------------------------------------------------------------------------


async def test_custom_http_errors_are_served_by_the_default_backend(stack: Stack) -> None:
    host = "errors.example.com"
    response = await request(stack, host, "/status/404")
    assert response.status == 404
    body = response.json()
    assert body["pod"] == "echo-err-7c9d5f-1"
    assert body["path"] == "/"
    assert body["headers"]["X-Code"] == ["404"]
    # The route table header (docs/route-table-split.md) never reaches a backend, split or not.
    assert "X-Xdsbus-Route-Table" not in body["headers"]
    response = await request(stack, host, "/status/503")
    assert (response.status, response.json()["pod"]) == (503, "echo-err-7c9d5f-1")
    # Codes not listed pass through, and so do successes.
    response = await request(stack, host, "/status/500")
    assert (response.status, response.body) == (500, b"")
    assert _body(await request(stack, host, "/fine"))["pod"] == "echo-a-7c9d5f-1"


async def test_default_backend_takes_over_a_service_without_endpoints(stack: Stack) -> None:
    body = _body(await request(stack, "fallback.example.com", "/x?y=1"))
    assert (body["pod"], body["path"]) == ("echo-err-7c9d5f-1", "/x?y=1")


# -- match conditions ---------------------------------------------------------------------------------


async def test_match_method(stack: Stack) -> None:
    assert _body(await request(stack, "method.example.com", "/m"))["method"] == "GET"
    assert (await request(stack, "method.example.com", "/m", method="POST")).status == 404


async def test_header_and_query_matches(stack: Stack) -> None:
    host = "match.example.com"
    good = {"X-Env": "prod", "X-Ver": "v1.2"}

    async def pod(target: str, headers: dict[str, str]) -> str:
        return str(_body(await request(stack, host, target, headers=headers))["pod"]).rsplit("-", 2)[0]

    assert await pod("/?id=42", good) == A
    assert await pod("/?id=4x2", good) == "echo-b"
    assert await pod("/", good) == "echo-b"
    assert await pod("/?id=42", {**good, "X-Env": "production"}) == "echo-b"
    assert await pod("/?id=42", {**good, "X-Ver": "2.v1"}) == "echo-b"
    assert await pod("/?id=42", {"X-Ver": "v1"}) == "echo-b"


async def test_ignore_path_case(stack: Stack) -> None:
    for target in ("/Foo", "/foo/x", "/FOO/y"):
        assert _body(await request(stack, "case.example.com", target))["path"] == target
    assert (await request(stack, "case.example.com", "/food")).status == 404


# -- invalid values -----------------------------------------------------------------------------------


async def test_invalid_values_are_reported_and_the_ingress_still_serves(stack: Stack) -> None:
    warnings = await wait_warning(stack, "invalid", "higress.io/timeout")
    assert sorted(warnings) == [
        'annotation higress.io/timeout: "x" is not an integer',
        'annotation nginx.ingress.kubernetes.io/load-balance: "fastest" is not a load balancer '
        "(round_robin, least_conn, least_request, random)",
        'annotation nginx.ingress.kubernetes.io/proxy-next-upstream-tries: "many" is not an integer',
        'annotation nginx.ingress.kubernetes.io/whitelist-source-range: "nope" has no valid IP range: '
        "the allow list is ignored (every client is served)",
    ]
    # No allow list, no timeout: a slow answer still arrives.
    body = _body(await request(stack, "invalid.example.com", "/?delay=200ms"))
    assert body["pod"] == "echo-a-7c9d5f-1"
    status = await ingress_status(stack, "timeout")
    assert status is not None and (status.state, status.warnings) == ("accepted", [])


async def test_every_ingress_is_accepted_without_other_warnings(stack: Stack) -> None:
    names = {i["metadata"]["name"] for i in _ingresses()}
    statuses = await wait_statuses(stack, names)
    assert {name: statuses[name].state for name in names} == dict.fromkeys(names, "accepted")
    assert {name: statuses[name].warnings for name in names if statuses[name].warnings}.keys() == {"invalid"}
