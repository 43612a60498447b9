"""Large objects against the fake API server and a real nats-server (docs/design.md §4): a body over a
message's size is claim-checked, one over the cap is reported, and neither blocks its feed."""

from __future__ import annotations

import base64
import os

from tests.fakes.kube_api import FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import SYSTEM, StartWatcher, last_sync_keys, secret, service, wait_synced
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import Verdict
from xdsbus.events import MAX_BODY_BYTES, Op
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import eventually

SOURCE = "k8s/default"
MIB = 1024 * 1024


def helm_release(name: str, size: int) -> dict[str, object]:
    """A Helm release Secret whose data is `size` bytes of base64 (random: it does not compress)."""
    release = base64.b64encode(os.urandom(size // 4 * 3)).decode()
    return secret(f"sh.helm.release.v1.{name}.v1", SYSTEM, type_="helm.sh/release.v1", release=release)


async def folded(bus: Bus) -> FoldState:
    """The state every reader of the log folds (claim-checked bodies read back)."""
    state = FoldState()
    result = await fold_until(bus, state, await last_event_seq(bus))
    assert not result.rejected, result.rejected
    return state


async def test_large_secrets_neither_block_the_feed_nor_lose_the_resync(
    bus: Bus, kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(service("web", SYSTEM))
    kube.create(secret("registry", SYSTEM, token=base64.b64encode(b"t").decode()))
    kube.create(helm_release("web", 2 * MIB))
    kube.create(helm_release("huge", 20 * MIB))
    big, huge = f"{SYSTEM}/sh.helm.release.v1.web.v1", f"{SYSTEM}/sh.helm.release.v1.huge.v1"

    await start_watcher()
    await wait_synced(events, "Service", "Secret")

    # The resync ends, and its key list names every Secret: the builder keeps what it has of `huge`.
    assert sorted(last_sync_keys(events, "Secret") or []) == sorted([f"{SYSTEM}/registry", big, huge])
    assert {e.key for e in events.of(Op.UPSERT, "Secret")} == {f"{SYSTEM}/registry", big}
    state = await folded(bus)
    secrets = state.objects["Secret"][SOURCE]
    assert set(secrets) == {f"{SYSTEM}/registry", big}
    opened = SecretBox.from_env().open(secrets[big].value(), source=SOURCE, kind="Secret", key=big)
    assert (
        opened["data"]["release"]
        == (kube.get("v1", "Secret", SYSTEM, big.split("/")[1]) or {})["data"]["release"]
    )
    assert set(state.objects["Service"][SOURCE]) == {f"{SYSTEM}/web"}

    status = await status_store.read(bus, "Secret", SOURCE, huge)
    assert status is not None and status.state is Verdict.REJECTED
    assert str(MAX_BODY_BYTES) in status.reason and "bytes" in status.reason

    # The feed goes on: a later change of the same kind arrives.
    kube.create(secret("later", SYSTEM, token=base64.b64encode(b"t").decode()))

    async def later_folded() -> bool:
        return f"{SYSTEM}/later" in (await folded(bus)).objects["Secret"][SOURCE]

    await eventually(later_folded, timeout=10, what="a later Secret in the folded state")
