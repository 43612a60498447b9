"""tls_hosts_change: what one Ingress change costs the translator when thousands of hosts are served
over TLS.

value     median time of `Translator.update` plus `table.commit()` for one Ingress whose path changes
          (HTTP and HTTPS routes of its host), with BENCH_HOSTS Ingresses, each with TLS on its own host
          (one shared certificate Secret).
baseline  the same change, in the same run, with BENCH_HOSTS Ingresses without TLS: the HTTP-only cost.
params    https_listener_build_s: building and serializing the HTTPS listener (one SNI filter chain
          per TLS host) alone, which a change used to pay whatever it touched; sizes.

The ratio says how much TLS hosts add to a change that touches one host; the listener's own build time
says what a change would cost if it were rebuilt each time.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

from bench import workload
from bench.results_io import env_int, median, write_result
from tests.support.certs import TestCA
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.secretbox import SecretBox
from xdsbus.translate.translator import Translator

NAME = "tls_hosts_change"
PARAMS = {
    "BENCH_HOSTS": (5_000, "Ingresses, one host each (and one Service each)"),
    "BENCH_REPEAT": (20, "timed changes per variant; medians are reported"),
}
SECRET = "bench-cert"


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
    return box.seal(body)


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


def _change_times(hosts: int, tls: bool, repeat: int, box: SecretBox) -> tuple[list[float], Translator]:
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
    return times, translator


def run() -> dict[str, Any]:
    hosts = env_int("BENCH_HOSTS", 5_000)
    repeat = max(1, env_int("BENCH_REPEAT", 20))
    box = SecretBox(os.urandom(32))
    plain, _ = _change_times(hosts, False, repeat, box)
    with_tls, translator = _change_times(hosts, True, repeat, box)
    if len(translator._tls_hosts) != hosts:
        raise RuntimeError(f"{len(translator._tls_hosts)} of {hosts} hosts are served over TLS")
    chains = translator._https_chains
    start = time.perf_counter()
    for _ in range(3):
        translator._put_https_listener(translator.https_port, chains)
    listener_s = (time.perf_counter() - start) / 3
    return write_result(
        NAME,
        value=round(median(with_tls), 6),
        unit="s",
        baseline=round(median(plain), 6),
        params={
            "hosts": hosts,
            "repeat": repeat,
            "tls_change_max_s": round(max(with_tls), 6),
            "plain_change_max_s": round(max(plain), 6),
            "https_listener_build_s": round(listener_s, 6),
        },
    )
