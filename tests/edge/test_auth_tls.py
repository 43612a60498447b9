"""xDS over TLS and mTLS, and the access policy (docs/design.md §10): a real edge and gRPC clients with
certificates from the harness's PKI."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import base_config, listener, names, secret
from tests.edge.proxies import DeltaProxy, SotwProxy
from tests.edge.support import ADS_DELTA, ADS_SOTW, LedgerWriter, http_get, serving
from xdsbus.contract.type_urls import CLUSTER, SECRET
from xdsbus_dev.harness.certs import EDGE_SERVER_NAME, ENVOY_IDENTITY, TestCA, XdsPki
from xdsbus_dev.harness.processes import eventually
from xdsbus_edge.access_policy import load_policy
from xdsbus_edge.xds_tls import ServerTls


class TlsLink:
    """A proxy's stream over a TLS channel, with an optional client certificate and bearer token."""

    def __init__(
        self,
        port: int,
        *,
        ca: bytes,
        cert: tuple[bytes, bytes] | None = None,
        token: str | None = None,
        delta: bool = False,
    ) -> None:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=cert[1] if cert else None,
            certificate_chain=cert[0] if cert else None,
        )
        self.channel = grpc.aio.secure_channel(
            f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", EDGE_SERVER_NAME)]
        )
        req = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        resp = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        self.call = self.channel.stream_stream(
            ADS_DELTA if delta else ADS_SOTW,
            request_serializer=req.SerializeToString,
            response_deserializer=resp.FromString,
        )(metadata=metadata)

    async def send(self, request: Any) -> None:
        try:
            await self.call.write(request)
        except grpc.aio.AioRpcError:
            pass  # refused before the request went out: `status` tells why

    async def read(self, timeout: float) -> Any | None:
        response = await asyncio.wait_for(self.call.read(), timeout)
        return None if response is grpc.aio.EOF else response

    async def status(self, timeout: float) -> grpc.StatusCode:
        try:
            while await asyncio.wait_for(self.call.read(), timeout) is not grpc.aio.EOF:
                pass
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


CA = TestCA("xdsbus edge test CA")


@pytest.fixture
def pki(tmp_path: Path) -> XdsPki:
    return XdsPki(tmp_path / "pki").create(CA)


def _pair(ca: TestCA, uri: str) -> tuple[bytes, bytes]:
    pair = ca.issue(client=True, uris=(uri,))
    return pair.cert_pem, pair.key_pem


def _policy(tmp_path: Path) -> Path:
    (tmp_path / "team-b.token").write_text("b-secret-token\n")
    path = tmp_path / "policy.yaml"
    path.write_text(
        f"allow:\n"
        f"  - identity: {ENVOY_IDENTITY}\n"
        f"    scopes: [default]\n"
        f"  - token_file: team-b.token\n"
        f"    scopes: [team-b]\n"
    )
    return path


async def _denied(port: int) -> dict[str, float]:
    _, text = await http_get(port, "/metrics")
    out = {}
    for line in text.splitlines():
        if line.startswith("xdsbus_edge_xds_denied{"):
            labels, value = line.rsplit(" ", 1)
            out[labels.split('"')[1]] = float(value)
    return out


async def test_mtls_serves_a_known_identity_and_refuses_everyone_else(
    make_edge, bus, pki: XdsPki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v = await base_config(LedgerWriter(bus)).commit()
    edge = await make_edge(
        xds_tls=ServerTls(pki.edge_cert, pki.edge_key, pki.ca_file),
        access_policy=load_policy(_policy(tmp_path)),
    )
    await serving(edge, v)
    ca = pki.ca_file.read_bytes()
    envoy_cert = (pki.envoy_cert.read_bytes(), pki.envoy_key.read_bytes())
    made: list[SotwProxy] = []

    def proxy(scope: str | None = None, **kw: Any) -> SotwProxy:
        made.append(SotwProxy(TlsLink(edge.xds_port, ca=ca, **kw), scope=scope))
        return made[-1]

    try:
        good = proxy(cert=envoy_cert)
        await good.request(CLUSTER)
        assert names(await good.recv()) == ["a", "b"]

        # Without a client certificate, or with one from another CA, the handshake fails: no config.
        for cert in (None, _pair(TestCA("another CA"), ENVOY_IDENTITY)):
            stranger = proxy(cert=cert)
            await stranger.request(CLUSTER)
            assert await stranger.status() == grpc.StatusCode.UNAVAILABLE

        # A known identity asking for a scope it was not granted; a certificate of the CA whose SAN the
        # policy does not name.
        nosy = proxy(scope="team-b", cert=envoy_cert)
        await nosy.request(CLUSTER)
        assert await nosy.status() == grpc.StatusCode.PERMISSION_DENIED
        unknown = proxy(cert=_pair(CA, "spiffe://xdsbus.local/somebody"))
        await unknown.request(CLUSTER)
        assert await unknown.status() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        for p in made:
            await p.close()
    denied = await _denied(edge.http_port)
    assert denied == {"scope": 1, "unknown_identity": 1}, denied
    assert any(
        "denied StreamAggregatedResources" in r.getMessage()
        and ENVOY_IDENTITY in r.getMessage()
        and "'team-b'" in r.getMessage()
        for r in caplog.records
    )


async def test_a_proxy_gets_only_the_secrets_of_its_scope_that_its_listeners_name(
    make_edge, bus, pki: XdsPki, tmp_path: Path
) -> None:
    v = await base_config(LedgerWriter(bus)).put(secret("orphan")).commit()
    await LedgerWriter(bus, "team-b").put(secret("b-key"), listener("lb", secrets=("b-key",))).commit()
    edge = await make_edge(
        xds_tls=ServerTls(pki.edge_cert, pki.edge_key, pki.ca_file),
        access_policy=load_policy(_policy(tmp_path)),
    )
    await serving(edge, v)
    ca = pki.ca_file.read_bytes()
    cert = (pki.envoy_cert.read_bytes(), pki.envoy_key.read_bytes())
    wanted = ["s1", "orphan", "b-key"]
    sotw = SotwProxy(TlsLink(edge.xds_port, ca=ca, cert=cert))
    delta = DeltaProxy(TlsLink(edge.xds_port, ca=ca, cert=cert, delta=True))
    for_b: list[SotwProxy | DeltaProxy] = [
        SotwProxy(TlsLink(edge.xds_port, ca=ca, cert=cert), scope="team-b"),
        DeltaProxy(TlsLink(edge.xds_port, ca=ca, cert=cert, delta=True), scope="team-b"),
    ]
    try:
        await sotw.request(SECRET, wanted)
        assert names(await sotw.recv()) == ["s1"]
        await delta.request(SECRET, wanted)
        got = await delta.recv()
        assert (names(got), sorted(got.removed_resources)) == (["s1"], ["b-key", "orphan"])
        for proxy in for_b:
            await proxy.request(SECRET, ["b-key"])
            assert await proxy.status() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        for proxy in (sotw, delta, *for_b):
            await proxy.close()


async def test_a_rotated_server_certificate_is_served_without_a_restart(make_edge, bus, pki: XdsPki) -> None:
    v = await base_config(LedgerWriter(bus)).commit()
    edge = await make_edge(xds_tls=ServerTls(pki.edge_cert, pki.edge_key, pki.ca_file))
    await serving(edge, v)
    cert = (pki.envoy_cert.read_bytes(), pki.envoy_key.read_bytes())
    # A new CA signs the edge's new certificate (and the proxies' new one): cert-manager style rotation
    # of the mounted files. gRPC asks for the files at a handshake and uses what changed from then on.
    new_ca = TestCA("rotated CA")
    new_pki = XdsPki(pki.directory).create(new_ca)
    new_cert = (new_pki.envoy_cert.read_bytes(), new_pki.envoy_key.read_bytes())

    async def served(ca: bytes, pair: tuple[bytes, bytes]) -> bool:
        proxy = SotwProxy(TlsLink(edge.xds_port, ca=ca, cert=pair))
        try:
            await proxy.request(CLUSTER)
            return names(await proxy.recv(timeout=2)) == ["a", "b"]
        except (AssertionError, TimeoutError, grpc.aio.AioRpcError):
            return False
        finally:
            await proxy.close()

    await eventually(lambda: served(new_ca.cert_pem, new_cert), timeout=10, what="the rotated certificate")
    assert not await served(CA.cert_pem, cert)


async def test_a_bearer_token_over_server_tls_is_an_identity(
    make_edge, bus, pki: XdsPki, tmp_path: Path
) -> None:
    v = await LedgerWriter(bus, "team-b").put(secret("b-key"), listener("lb", secrets=("b-key",))).commit()
    # TLS without client certificates: the token in the call's metadata is the only identity.
    edge = await make_edge(
        xds_tls=ServerTls(pki.edge_cert, pki.edge_key),
        access_policy=load_policy(_policy(tmp_path)),
        scopes=("team-b",),
    )
    await serving(edge, v, scope="team-b")
    ca = pki.ca_file.read_bytes()
    made: list[DeltaProxy] = []

    def proxy(token: str | None) -> DeltaProxy:
        made.append(DeltaProxy(TlsLink(edge.xds_port, ca=ca, token=token, delta=True), scope="team-b"))
        return made[-1]

    try:
        holder = proxy("b-secret-token")
        await holder.request(SECRET, ["b-key"])
        assert names(await holder.recv()) == ["b-key"]
        for token in ("guessed", None):
            stranger = proxy(token)
            await stranger.request(SECRET, ["b-key"])
            assert await stranger.status() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for p in made:
            await p.close()
    assert await _denied(edge.http_port) == {"bad_token": 1, "no_identity": 1}
