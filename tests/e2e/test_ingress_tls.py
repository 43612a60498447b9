"""Ingress TLS end to end: certificates by SNI through SDS, redirects to HTTPS, and a Secret rotation
reaching Envoy without a restart or a listener drain."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import TestCA, certificate_names
from xdsbus_dev.harness.stack import Stack, ingress_manifest, tls_secret_manifest

pytestmark = pytest.mark.slow

SHOP = "shop.example.com"
API = "api.example.com"


def tls_ingress(name: str, host: str, secret: str, **annotations: str) -> dict:
    ingress = ingress_manifest(name, host, [("/", "echo-a")])
    ingress["spec"]["tls"] = [{"hosts": [host], "secretName": secret}]
    ingress["metadata"]["annotations"] = annotations
    return ingress


async def test_certificates_by_sni_redirects_and_rotation(tmp_path: Path) -> None:
    ca = TestCA()
    shop_cert = ca.issue(SHOP)
    api_cert = ca.issue(API)
    async with Stack(tmp_path, edges=1) as stack:
        assert stack.envoy is not None
        stack.write(
            "tls.yaml",
            [
                tls_secret_manifest("shop-tls", shop_cert.cert_pem, shop_cert.key_pem),
                tls_secret_manifest("api-tls", api_cert.cert_pem, api_cert.key_pem),
                tls_ingress("shop", SHOP, "shop-tls", **{"nginx.ingress.kubernetes.io/ssl-redirect": "true"}),
                tls_ingress("api", API, "api-tls"),
            ],
        )
        context = ca.client_context()

        async def served(host: str) -> list[str] | None:
            try:
                response = await stack.curl_tls("/x", host, context)
            except OSError:
                return None
            if response.status != 200:
                return None
            return [response.json()["host"], response.json()["pod"]]

        assert await stack.wait(lambda: served(SHOP), what="shop over TLS") == [SHOP, "echo-a-7c9d5f-1"]
        assert await stack.wait(lambda: served(API), what="api over TLS") == [API, "echo-a-7c9d5f-1"]

        # Each SNI gets its own certificate (the client context verifies the name too).
        response = await stack.curl_tls("/", SHOP, context)
        assert response.status == 200
        async with http.Connection("127.0.0.1", stack.https_port, tls=context, server_name=API) as conn:
            assert conn.peer_certificate is not None
            assert certificate_names(conn.peer_certificate) == [API]

        # ssl-redirect on a TLS host: plain HTTP answers 308 to https; the other host serves HTTP.
        plain = await stack.curl("/cart?id=1", host=SHOP)
        assert plain.status == 308, plain.text
        assert plain.header("location") == f"https://{SHOP}/cart?id=1"
        assert (await stack.curl("/", host=API)).status == 200

        # Rotation: a new certificate for shop reaches Envoy through SDS; no listener is rebuilt.
        listeners_before = await stack.envoy.stat("listener_manager.listener_modified")
        rotated = ca.issue(SHOP, "www." + SHOP)
        stack.write(
            "tls.yaml",
            [
                tls_secret_manifest("shop-tls", rotated.cert_pem, rotated.key_pem),
                tls_secret_manifest("api-tls", api_cert.cert_pem, api_cert.key_pem),
                tls_ingress("shop", SHOP, "shop-tls", **{"nginx.ingress.kubernetes.io/ssl-redirect": "true"}),
                tls_ingress("api", API, "api-tls"),
            ],
        )

        async def names_served() -> list[str] | None:
            conn = http.Connection("127.0.0.1", stack.https_port, tls=context, server_name=SHOP)
            await conn.connect()
            await conn.close()
            names = certificate_names(conn.peer_certificate)
            return names if len(names) == 2 else None

        assert await stack.wait(names_served, what="the rotated certificate") == [SHOP, "www." + SHOP]
        assert await stack.envoy.stat("listener_manager.listener_modified") == listeners_before
