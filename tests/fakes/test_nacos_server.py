"""The fake Nacos driven by the real nacos-sdk-python 3.x client (handshake, list, subscribe, push, register,
auth, outage) and by raw gRPC calls for what the client never sends on its own."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyProto
from v2.nacos import (
    ClientConfigBuilder,
    DeregisterInstanceParam,
    GRPCConfig,
    ListServiceParam,
    NacosException,
    NacosNamingService,
    RegisterInstanceParam,
    SubscribeServiceParam,
)
from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2 import Metadata, Payload
from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2_grpc import RequestStub

from tests.fakes.nacos_server import FakeNacos
from xdsbus_dev.harness.processes import eventually


@pytest.fixture
async def fake() -> AsyncIterator[FakeNacos]:
    server = FakeNacos()
    await server.start()
    yield server
    await server.stop()


async def naming(
    fake: FakeNacos, tmp_path: Path, *, namespace: str = "public", **auth: str
) -> NacosNamingService:
    builder = (
        ClientConfigBuilder()
        .server_address(fake.address)
        .namespace_id(namespace)
        .log_dir(str(tmp_path / "log"))
        .cache_dir(str(tmp_path / "cache"))
        .load_cache_at_start(False)
        .grpc_config(GRPCConfig(grpc_timeout=3000))
    )
    if "username" in auth:
        builder = builder.username(auth["username"]).password(auth["password"])
    if "access_key" in auth:
        builder = builder.access_key(auth["access_key"]).secret_key(auth["secret_key"])
    cfg = builder.build()
    cfg.set_update_cache_when_empty(True)
    return await NacosNamingService.create_naming_service(cfg)


class Pushes:
    """Collects what a subscribe callback receives, for awaiting."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[list[tuple[str, int, bool, float]]] = asyncio.Queue()

    async def __call__(self, instances: list[Any]) -> None:
        self.queue.put_nowait(sorted((i.ip, i.port, i.healthy, i.weight) for i in instances))

    async def next(self) -> list[tuple[str, int, bool, float]]:
        return await asyncio.wait_for(self.queue.get(), 5)


async def until(check: Callable[[], bool], fake: FakeNacos, timeout: float = 5.0) -> None:
    """Wait for a condition on the fake's state, woken by its changes (no polling sleeps)."""

    async def loop() -> None:
        while not check():
            await fake.wait_changed()

    await asyncio.wait_for(loop(), timeout)


async def raw_request(fake: FakeNacos, type_: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """One unary call on a fresh channel (no ConnectionSetup on it)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fake.grpc_port}") as channel:
        payload = Payload(metadata=Metadata(type=type_), body=AnyProto(value=json.dumps(body).encode()))
        answer = await RequestStub(channel).request(payload, timeout=5)
    return answer.metadata.type, json.loads(answer.body.value)


async def test_handshake_and_list_services_paged(fake: FakeNacos, tmp_path: Path) -> None:
    for i in range(57):
        fake.register(f"svc-{i:02}", "10.0.0.1", 8080)
    fake.register("other", "10.0.0.2", 80, group="G2")
    fake.register("elsewhere", "10.0.0.3", 80, namespace="dev")
    ns = await naming(fake, tmp_path)
    try:
        assert await ns.server_health()
        setup = fake.requests_of("ConnectionSetupRequest")[0]
        assert setup.body["labels"] == {"source": "sdk", "module": "naming"}
        assert setup.body["clientVersion"].startswith("Nacos-Python-Client")
        assert len(fake.connections) == 1

        first = await ns.list_services(ListServiceParam(group_name="DEFAULT_GROUP", page_no=1, page_size=50))
        second = await ns.list_services(ListServiceParam(group_name="DEFAULT_GROUP", page_no=2, page_size=50))
        assert first.count == second.count == 57
        assert len(first.services) == 50 and len(second.services) == 7
        assert set(first.services) | set(second.services) == {f"svc-{i:02}" for i in range(57)}
        g2 = await ns.list_services(ListServiceParam(group_name="G2", page_no=1, page_size=50))
        assert g2.services == ["other"]  # bare names, exact group
        request = fake.requests_of("ServiceListRequest")[0].body
        assert request["namespace"] == "public" and request["pageNo"] == 1
    finally:
        await ns.shutdown()


async def test_subscribe_gets_current_state_then_pushes(fake: FakeNacos, tmp_path: Path) -> None:
    fake.register("svc", "10.0.0.1", 8080, metadata={"protocol": "grpc"})
    ns = await naming(fake, tmp_path)
    pushes = Pushes()
    try:
        await ns.subscribe(SubscribeServiceParam(service_name="svc", subscribe_callback=pushes))
        assert await pushes.next() == [("10.0.0.1", 8080, True, 1.0)]
        assert fake.subscribers("svc") == 1

        fake.register("svc", "10.0.0.2", 8081, weight=3.0)
        assert await pushes.next() == [("10.0.0.1", 8080, True, 1.0), ("10.0.0.2", 8081, True, 3.0)]
        fake.set_healthy("svc", "10.0.0.2", 8081, False)
        assert await pushes.next() == [("10.0.0.1", 8080, True, 1.0), ("10.0.0.2", 8081, False, 3.0)]
        fake.set_enabled("svc", "10.0.0.1", 8080, False)  # disabled instances are not pushed
        assert await pushes.next() == [("10.0.0.2", 8081, False, 3.0)]
        fake.deregister("svc", "10.0.0.2", 8081)
        assert await pushes.next() == []  # the empty push arrives (update_cache_when_empty)
        await until(lambda: sum(a["type"] == "NotifySubscriberResponse" for a in fake.acks) >= 4, fake)
        push_ack = next(a for a in fake.acks if a["type"] == "NotifySubscriberResponse")
        assert push_ack["resultCode"] == 200 and push_ack["requestId"]
    finally:
        await ns.shutdown()


async def test_real_client_registers_and_its_instances_die_with_its_connection(
    fake: FakeNacos, tmp_path: Path
) -> None:
    provider = await naming(fake, tmp_path / "a")
    await provider.register_instance(
        RegisterInstanceParam(
            service_name="svc", group_name="G", ip="10.1.0.1", port=7000, metadata={"k": "v"}
        )
    )
    await provider.register_instance(
        RegisterInstanceParam(service_name="svc", group_name="G", ip="10.1.0.2", port=7000)
    )
    [inst, _] = sorted(fake.instances("svc", group="G"), key=lambda i: i["ip"])
    assert inst["instanceId"] == "10.1.0.1#7000#DEFAULT#G@@svc"
    assert inst["serviceName"] == "G@@svc" and inst["metadata"] == {"k": "v"}
    register = fake.requests_of("InstanceRequest")[0].body
    assert register["type"] == "registerInstance" and register["namespace"] == "public"

    watcher = await naming(fake, tmp_path / "b")
    pushes = Pushes()
    try:
        await watcher.subscribe(
            SubscribeServiceParam(service_name="svc", group_name="G", subscribe_callback=pushes)
        )
        assert [i[0] for i in await pushes.next()] == ["10.1.0.1", "10.1.0.2"]
        await provider.deregister_instance(
            DeregisterInstanceParam(service_name="svc", group_name="G", ip="10.1.0.2", port=7000)
        )
        assert [i[0] for i in await pushes.next()] == ["10.1.0.1"]
        await provider.shutdown()  # ephemeral: gone with the connection
        assert await pushes.next() == []
        assert fake.services(group="G") == ["svc"]  # the (empty) service stays listed
    finally:
        await watcher.shutdown()


async def test_push_garbage_reaches_the_client_next_to_good_instances(
    fake: FakeNacos, tmp_path: Path
) -> None:
    fake.register("svc", "10.0.0.1", 8080)
    ns = await naming(fake, tmp_path)
    pushes = Pushes()
    try:
        await ns.subscribe(SubscribeServiceParam(service_name="svc", subscribe_callback=pushes))
        await pushes.next()
        fake.push_garbage("svc", {"ip": "", "port": 99999, "weight": -1})
        assert await pushes.next() == [("", 99999, True, -1.0), ("10.0.0.1", 8080, True, 1.0)]
    finally:
        await ns.shutdown()


async def test_protect_threshold_marks_all_healthy(fake: FakeNacos, tmp_path: Path) -> None:
    fake.register("svc", "10.0.0.1", 80, healthy=False)
    fake.register("svc", "10.0.0.2", 80, healthy=False)
    ns = await naming(fake, tmp_path)
    pushes = Pushes()
    try:
        await ns.subscribe(SubscribeServiceParam(service_name="svc", subscribe_callback=pushes))
        assert [i[2] for i in await pushes.next()] == [False, False]  # no ServiceMetadata: no protection
        fake.set_protect_threshold("svc", 0.5)
        assert [i[2] for i in await pushes.next()] == [True, True]
    finally:
        await ns.shutdown()


async def test_service_query_and_unregistered_connection(fake: FakeNacos) -> None:
    fake.register("svc", "10.0.0.1", 80, cluster="A")
    fake.register("svc", "10.0.0.2", 80, cluster="B", healthy=False)
    type_, body = await raw_request(
        fake, "ServerCheckRequest", {"headers": {}, "requestId": "", "module": ""}
    )
    assert type_ == "ServerCheckResponse" and body["connectionId"] and "message" not in body
    # No ConnectionSetup on this channel: naming requests are refused like the real server does.
    type_, body = await raw_request(
        fake, "ServiceQueryRequest", {"namespace": "public", "serviceName": "svc"}
    )
    assert (type_, body["errorCode"]) == ("ErrorResponse", 301)

    # Over a set-up connection (the fake ties unary calls to the stream by peer).
    async with grpc.aio.insecure_channel(f"127.0.0.1:{fake.grpc_port}") as channel:
        from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2_grpc import BiRequestStreamStub

        setup = Payload(
            metadata=Metadata(type="ConnectionSetupRequest"),
            body=AnyProto(value=json.dumps({"labels": {}, "abilityTable": None}).encode()),
        )
        outgoing: asyncio.Queue[Payload] = asyncio.Queue()
        outgoing.put_nowait(setup)

        async def sender() -> AsyncIterator[Payload]:
            while True:
                yield await outgoing.get()

        stream = BiRequestStreamStub(channel).requestBiStream(sender())
        await until(lambda: bool(fake.connections), fake)
        query: dict[str, Any] = {
            "namespace": "public",
            "groupName": "DEFAULT_GROUP",
            "serviceName": "svc",
            "cluster": "A",
        }
        payload = Payload(
            metadata=Metadata(type="ServiceQueryRequest"), body=AnyProto(value=json.dumps(query).encode())
        )
        answer = await RequestStub(channel).request(payload, timeout=5)
        info = json.loads(answer.body.value)["serviceInfo"]
        assert answer.metadata.type == "QueryServiceResponse"
        assert [h["ip"] for h in info["hosts"]] == ["10.0.0.1"] and info["clusters"] == "A"
        query.update(cluster="", healthOnly=True)
        payload.body.value = json.dumps(query).encode()
        info = json.loads((await RequestStub(channel).request(payload, timeout=5)).body.value)["serviceInfo"]
        assert [h["ip"] for h in info["hosts"]] == ["10.0.0.1"]
        unknown = Payload(metadata=Metadata(type="NoSuchRequest"), body=AnyProto(value=b"{}"))
        answer = await RequestStub(channel).request(unknown, timeout=5)
        assert answer.metadata.type == "ErrorResponse" and json.loads(answer.body.value)["errorCode"] == 302
        stream.cancel()
    await until(lambda: not fake.connections, fake)


async def test_username_password_auth(tmp_path: Path) -> None:
    fake = FakeNacos(username="nacos", password="s3cret")
    await fake.start()
    try:
        fake.register("svc", "10.0.0.1", 80)
        ns = await naming(fake, tmp_path, username="nacos", password="s3cret")
        try:
            listed = await ns.list_services(ListServiceParam(page_no=1, page_size=10))
            assert listed.services == ["svc"]
            assert fake.logins[0] == {"username": "nacos", "password": "s3cret"}
            assert fake.requests_of("ServiceListRequest")[-1].headers["accessToken"]
        finally:
            await ns.shutdown()

        bad = await naming(fake, tmp_path, username="nacos", password="wrong")
        try:
            with pytest.raises(NacosException):
                await bad.list_services(ListServiceParam(page_no=1, page_size=10))
        finally:
            await bad.shutdown()

        # Without credentials at all the request reaches the server and is refused there (403).
        anonymous = await naming(fake, tmp_path)
        try:
            with pytest.raises(NacosException):
                await anonymous.list_services(ListServiceParam(page_no=1, page_size=10))
        finally:
            await anonymous.shutdown()
    finally:
        await fake.stop()


async def test_access_key_signature(tmp_path: Path) -> None:
    fake = FakeNacos(secret_key="sk")
    await fake.start()
    try:
        fake.register("svc", "10.0.0.1", 80)
        ns = await naming(fake, tmp_path, access_key="ak", secret_key="sk")
        try:
            await ns.subscribe(SubscribeServiceParam(service_name="svc", subscribe_callback=Pushes()))
            headers = fake.requests_of("SubscribeServiceRequest")[-1].headers
            assert headers["ak"] == "ak" and headers["data"].endswith("@@DEFAULT_GROUP@@svc")
            expected = base64.encodebytes(hmac.new(b"sk", headers["data"].encode(), hashlib.sha1).digest())
            assert headers["signature"] == expected.decode().strip()
        finally:
            await ns.shutdown()
        wrong = await naming(fake, tmp_path, access_key="ak", secret_key="other")
        try:
            with pytest.raises(NacosException):
                await wrong.list_services(ListServiceParam(page_no=1, page_size=10))
        finally:
            await wrong.shutdown()
    finally:
        await fake.stop()


async def test_go_down_and_come_back(fake: FakeNacos, tmp_path: Path) -> None:
    fake.register("svc", "10.0.0.1", 80)
    ns = await naming(fake, tmp_path)
    rpc = ns.grpc_client_proxy.rpc_client
    first = rpc.current_connection
    try:
        await fake.go_down()
        await wait_for_state(lambda: not rpc.is_running())
        with pytest.raises(Exception):  # noqa: B017 - the SDK raises NacosException or a gRPC error
            await ns.list_services(ListServiceParam(page_no=1, page_size=10))
        await fake.come_back()
        await wait_for_state(lambda: rpc.is_running() and rpc.current_connection is not first, timeout=15)
        listed = await ns.list_services(ListServiceParam(page_no=1, page_size=10))
        assert listed.services == ["svc"]  # the driver's state survived the outage
    finally:
        await ns.shutdown()


async def wait_for_state(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """The SDK's connection state has no event to wait on: poll it."""

    async def probe() -> bool:
        return check()

    await eventually(probe, timeout=timeout, interval=0.02, what="the client's connection state")
