"""tls_hosts_change: what one Ingress change costs the translator when thousands of hosts are served
over TLS.

value     median time of `Translator.update` plus `table.commit()` for one Ingress whose path changes
          (HTTP and HTTPS routes of its host), with BENCH_HOSTS Ingresses, each with TLS on its own host
          (one shared certificate Secret).
baseline  the same change, in the same run, with BENCH_HOSTS Ingresses without TLS: the HTTP-only cost.
params    tls_host_added_s: median time of adding one more Ingress with a TLS host of its own, a change
          that does rebuild the HTTPS listener (one SNI filter chain per TLS host), which a change used
          to pay whatever it touched; sizes.

The ratio says how much TLS hosts add to a change that touches one host; the addition says what a change
would cost if the listener were rebuilt each time. Budget: ratio <= 2, a change of one host costs about
the same with or without thousands of TLS hosts (docs/design.md §8, "cost proportional to the change").
Checks: every change publishes something, and the HTTPS listener serves every TLS host (one SNI name
each) before and after the additions.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from google.protobuf import any_pb2

from bench import workload
from bench.results_io import env_int, median, write_result
from xdsbus.contract.type_urls import LISTENER
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.secretbox import SecretBox
from xdsbus.translate import envoy_listeners
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.certs import TestCA

NAME = "tls_hosts_change"
PARAMS = {
    "BENCH_HOSTS": (5_000, "Ingresses, one host each (and one Service each)"),
    "BENCH_REPEAT": (20, "timed changes per variant; medians are reported"),
}
SECRET = "bench-cert"
BUDGET_RATIO = 2.0
ADDITIONS = 5


def _secret(box: SecretBox) -> dict[str, Any]:
    pair = TestCA().issue("*.bench.example.com")
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": workload.NAMESPACE, "creationTimestamp": workload.CREATED},
        "data": {
            "tls.crt": base64.b64encode(pair.cert_pem).decode(),
            "tls.key": base64.b64encode(pair.key_pem).decode(),
        },
    }
    return box.seal(body, source=workload.SOURCE, kind="Secret", key=f"{workload.NAMESPACE}/{SECRET}")


def _ingress(i: int, tls: bool, path: str = workload.INGRESS_PATH) -> dict[str, Any]:
    body = workload.ingress(i)
    body["spec"]["rules"][0]["http"]["paths"][0]["path"] = path
    if tls:
        body["spec"]["tls"] = [{"hosts": [workload.ingress_host(i)], "secretName": SECRET}]
    return body


def _setup(hosts: int, tls: bool, box: SecretBox) -> tuple[FoldState, Translator, int]:
    state = FoldState()
    seq = 0
    events = [workload.upsert("Secret", SECRET, _secret(box), "1")] if tls else []
    for i in range(hosts):
        events.append(workload.upsert("Service", workload.service_name(i), workload.service(i), "1"))
        events.append(workload.upsert("Ingress", workload.ingress_name(i), _ingress(i, tls), "1"))
    for event in events:
        seq += 1
        apply(state, seq, event)
    translator = Translator(secret_box=box)
    translator.full_build(state)
    translator.table.commit()
    return state, translator, seq


def _change_times(
    hosts: int, tls: bool, repeat: int, box: SecretBox
) -> tuple[list[float], FoldState, Translator, int]:
    state, translator, seq = _setup(hosts, tls, box)
    i = hosts // 2
    name = workload.ingress_name(i)
    ref = ObjectRef("Ingress", workload.SOURCE, f"{workload.NAMESPACE}/{name}")
    times: list[float] = []
    for n in range(repeat):
        seq += 1
        body = _ingress(i, tls, path=f"{workload.INGRESS_PATH}/v{n}")
        apply(
            state,
            seq,
            Event(source=workload.SOURCE, kind="Ingress", key=ref.key, op=Op.UPSERT, rev=str(seq), body=body),
        )
        start = time.perf_counter()
        translator.update(state, [ref])
        changes = translator.table.commit()
        times.append(time.perf_counter() - start)
        if not changes:
            raise RuntimeError("the change published nothing")
    return times, state, translator, seq


def _tls_server_names(translator: Translator) -> set[str]:
    """Server names of the HTTPS listener's filter chains, read from the translator's bytes."""
    name = envoy_listeners.listener_name(translator.settings.https_port)
    resource = translator.table.get(LISTENER, name)
    if resource is None:
        raise AssertionError(f"no HTTPS listener {name}")
    listener = listener_pb2.Listener()
    any_pb2.Any.FromString(resource.body).Unpack(listener)
    return {n for chain in listener.filter_chains for n in chain.filter_chain_match.server_names}


def _additions(state: FoldState, translator: Translator, seq: int, hosts: int) -> list[float]:
    """Add ADDITIONS Ingresses with TLS hosts of their own (to existing Services), timed one by one."""
    times: list[float] = []
    for k in range(ADDITIONS):
        seq += 1
        i = hosts + k
        body = _ingress(i, True)
        body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = workload.service_name(k)
        name = workload.ingress_name(i)
        apply(state, seq, workload.upsert("Ingress", name, body, str(seq)))
        start = time.perf_counter()
        translator.update(state, [ObjectRef("Ingress", workload.SOURCE, f"{workload.NAMESPACE}/{name}")])
        translator.table.commit()
        times.append(time.perf_counter() - start)
    return times


def _expect_tls_hosts(translator: Translator, count: int) -> None:
    names = _tls_server_names(translator)
    wanted = {workload.ingress_host(i) for i in range(count)}
    if not wanted <= names:
        raise AssertionError(f"{len(wanted - names)} of {count} TLS hosts have no SNI filter chain")


def run() -> dict[str, Any]:
    hosts = env_int("BENCH_HOSTS", 5_000)
    repeat = max(1, env_int("BENCH_REPEAT", 20))
    box = SecretBox(os.urandom(32))
    plain, _, _, _ = _change_times(hosts, False, repeat, box)
    with_tls, state, translator, seq = _change_times(hosts, True, repeat, box)
    _expect_tls_hosts(translator, hosts)
    added = _additions(state, translator, seq, hosts)
    _expect_tls_hosts(translator, hosts + ADDITIONS)
    return write_result(
        NAME,
        value=round(median(with_tls), 6),
        unit="s",
        baseline=round(median(plain), 6),
        budget=BUDGET_RATIO,
        budget_on="ratio",
        # Asserted above (_change_times, _expect_tls_hosts).
        checks={"every_change_published": True, "every_tls_host_served": True},
        params={
            "hosts": hosts,
            "repeat": repeat,
            "tls_change_max_s": round(max(with_tls), 6),
            "plain_change_max_s": round(max(plain), 6),
            "tls_host_added_s": round(median(added), 6),
            "tls_host_additions": ADDITIONS,
        },
    )
