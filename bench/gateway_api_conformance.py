"""Gateway API conformance (HTTP traffic tests) against the real stack, without Kubernetes.

    python -m bench.gateway_api_conformance [--window 30] [--tests HTTPRouteMatching,...]
    make conformance

Brings up xdsbus_dev.harness.stack once (nats-server, builder, one edge, watch-file on a directory, a real
Envoy), emulates the cluster (echo backends for the Deployments, EndpointSlices for the Services, the
Namespaces with their labels, the TLS Secret the suite makes at run time, a GatewayClass `higress`), writes
the suite's base manifests, then for each test of expectations.json: writes its manifests, waits until
they are translated (the ledger moved, the Gateways' listeners are active in Envoy), runs its cases
concurrently, each until it passes RequiredConsecutiveSuccesses (3) times in a row within the consistency
window, and removes the manifests again. Results go to bench/results/gateway_api_conformance.json.

Deviations from the upstream suite (see also bench/conformance/manifests.py):
- Gateway listener ports are moved to free high ports (80, 443, 8080... are privileged) and requests go
  there; Host headers carry the suite's port (none for 80/443) as if nothing had moved, and a port in a
  redirect's Location that is one of the moved ports is mapped back before comparison.
- Pods are in-process echo backends on 127.0.0.1 (xdsbus_dev.echo), h2c and the /ws websocket echo on the same
  port as HTTP/1.1; h2 (HTTP/2 over TLS) uses the small client in bench/conformance/h2.py.
- The WebSocket test is not a round trip: aiohttp's client dials ws://<gateway>/ws, and an attempt passes
  when the text and the binary message both come back unchanged (3 attempts in a row, as for any case).
- HTTPS clients verify the certificate chain but not the host name (the suite's certificate has the
  SANs `*`, `*.org`, `*.wildcard.org`, which OpenSSL's host name check rejects as too wide).
- Statistical follow-ups (weights, percentage mirrors) make fewer attempts than upstream (3, not 5-10).
- Gateway/route status conditions are not checked (traffic only), as expectations.json covers traffic.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import ssl
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.conformance import h2, manifests
from bench.conformance.cases import (
    SWITCHING_PROTOCOLS,
    WEBSOCKET_MESSAGES,
    Case,
    Prepared,
    ResponseLike,
    capture,
    evaluate,
    is_core,
    pod_backend,
    prepare,
    websocket_echo_problem,
    weight_problems,
)
from bench.results_io import RESULTS_DIR, machine
from xdsbus.ledger import reader
from xdsbus_dev.echo import EchoIdentity, EchoServer, H2Error
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.processes import free_port
from xdsbus_dev.harness.stack import Stack, tls_secret_manifest

NAME = "gateway_api_conformance"
# The suite's data is not vendored (docs/conformance.md §2): the environment names it, else the runner
# looks for the team's shared data folder next to the checkout.
_BESIDE_CHECKOUT = Path(__file__).resolve().parent.parent.parent / "shared" / "conformance" / "gateway-api"
DEFAULT_SUITE = Path(os.environ.get("XDSBUS_CONFORMANCE_DIR", _BESIDE_CHECKOUT))
CLASS_NAME = "higress"
CONTROLLER = "higress.io/gateway-controller"
REQUIRED_SUCCESSES = 3
INFRA = "gateway-conformance-infra"
TLS_SECRET = "tls-validity-checks-certificate"
BASE = "conformance/base/manifests.yaml"
# Tests the runner cannot run, with why (their cases are reported as skipped); none at present.
SKIP_TESTS: dict[str, str] = {}


@dataclass
class Outcome:
    """One case's result."""

    case: Case
    status: str  # passed | failed | skipped
    reason: str = ""
    attempts: int = 0


@dataclass
class TestResult:
    name: str
    features: list[str]
    provisional: bool
    outcomes: list[Outcome] = field(default_factory=list)
    converged: bool = True
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def as_json(self) -> dict[str, Any]:
        return {
            "features": self.features,
            "core": is_core(self.features),
            "provisional": self.provisional,
            "converged": self.converged,
            "cases": len(self.outcomes),
            "passed": self.count("passed"),
            "failed": self.count("failed"),
            "skipped": self.count("skipped"),
            "seconds": round(self.seconds, 2),
            "failures": [
                {"case_index": o.case.index, "case_name": o.case.name, "reason": o.reason}
                for o in self.outcomes
                if o.status == "failed"
            ],
            "skips": [
                {"case_index": o.case.index, "case_name": o.case.name, "reason": o.reason}
                for o in self.outcomes
                if o.status == "skipped"
            ],
        }


class Runner:
    """The stack, the emulated pods and the cases. `run()` returns the results document."""

    def __init__(
        self,
        suite_dir: Path,
        workdir: Path,
        *,
        window: float,
        convergence_timeout: float,
        only: Sequence[str] = (),
        request_timeout: float = 5.0,
    ) -> None:
        self.suite_dir = suite_dir
        self.workdir = workdir
        self.window = window
        self.convergence_timeout = convergence_timeout
        self.request_timeout = request_timeout
        entries = json.loads((suite_dir / "expectations.json").read_text())["entries"]
        self.tests: dict[str, list[Case]] = collections.defaultdict(list)
        for entry in entries:
            case = Case.from_entry(entry)
            if not only or case.test in only:
                self.tests[case.test].append(case)
        self.stack: Stack | None = None
        self.echoes: dict[str, EchoServer] = {}  # by pod name
        self.pods: dict[str, manifests.PodSpec] = {}
        self.port_map: dict[manifests.GatewayPort, int] = {}
        self.unmap: dict[str, str] = {}
        self.client_tls = ssl.create_default_context()
        self.h2_tls: ssl.SSLContext | None = None
        self.seen_ports: set[int] = set()

    # -- set up ------------------------------------------------------------------------------------

    def _objects(self, relative: str) -> list[dict[str, Any]]:
        return manifests.load(self.suite_dir / relative, CLASS_NAME)

    def _plan_ports(self) -> None:
        """A free port for each port each Gateway of the run declares."""
        files = {BASE} | {m for cases in self.tests.values() for c in cases for m in c.manifests}
        ports: set[manifests.GatewayPort] = set()
        for relative in files:
            ports |= manifests.gateway_ports(self._objects(relative))
        for cases in self.tests.values():
            ports |= {self._key(c) for c in cases}
        self.port_map = {key: free_port() for key in sorted(ports)}
        self.unmap = {str(mapped): str(key[2]) for key, mapped in self.port_map.items()}

    @staticmethod
    def _key(case: Case) -> manifests.GatewayPort:
        return (str(case.gateway["namespace"]), str(case.gateway["name"]), case.gateway_port)

    def _follow_port(self, case: Case, port: int) -> int:
        """Where a redirect's port really listens: a mapped port as is, else the case's Gateway's, else
        any Gateway's mapping of it."""
        if str(port) in self.unmap:
            return port
        namespace, name, _ = self._key(case)
        if (mapped := self.port_map.get((namespace, name, port))) is not None:
            return mapped
        return next((m for (_, _, p), m in self.port_map.items() if p == port), port)

    async def _start_pods(self, pods: Sequence[manifests.PodSpec]) -> None:
        for pod in pods:
            identity = EchoIdentity(pod=pod.name, namespace=pod.namespace, service=pod.deployment)
            self.echoes[pod.name] = await EchoServer(identity).start()
            self.pods[pod.name] = pod

    async def _stop_pods(self, pods: Sequence[manifests.PodSpec]) -> None:
        for pod in pods:
            self.pods.pop(pod.name, None)
            if echo := self.echoes.pop(pod.name, None):
                await echo.stop()

    def _runnable(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        manual = [
            p for p in self.pods.values() if p.deployment == "infra-backend-v1" and p.namespace == INFRA
        ]
        return manifests.runnable(
            manifests.remap_ports(objects, self.port_map),
            list(self.pods.values()),
            lambda pod: self.echoes[pod.name].port,
            manual_slice_pods=manual,
        )

    async def start(self) -> None:
        self._plan_ports()
        self.stack = Stack(self.workdir, edges=1, backends=(), ingress=False)
        await self.stack.start()
        base = self._objects(BASE)
        await self._start_pods(manifests.pods_of(base))
        # The suite's self-signed certificate; a CA-issued leaf here, which the client trusts through the CA.
        ca = TestCA("gateway-api conformance")
        pair = ca.issue("*", "*.org", "*.wildcard.org")
        self.client_tls = ssl.create_default_context(cadata=ca.cert_pem.decode())
        self.client_tls.check_hostname = False
        self.h2_tls = h2.alpn_context(ca.cert_pem.decode(), check_hostname=False)
        secret = tls_secret_manifest(TLS_SECRET, pair.cert_pem, pair.key_pem, namespace=INFRA)
        objects = [manifests.gateway_class(CLASS_NAME, CONTROLLER), secret, *self._runnable(base)]
        await self._apply(lambda: self.stack.write("00-base.yaml", objects) if self.stack else None)
        # The base Gateways' listeners: once any is up, later tests wait for theirs in full.
        base_ports = {self.port_map[key] for key in manifests.gateway_ports(base)}
        await self._wait_listeners(base_ports, self.convergence_timeout)

    async def stop(self) -> None:
        for echo in self.echoes.values():
            await echo.stop()
        self.echoes.clear()
        if self.stack is not None:
            await self.stack.stop()

    # -- convergence ---------------------------------------------------------------------------------

    async def _head(self) -> int:
        assert self.stack is not None
        async with self.stack.bus() as bus:
            entry = await reader.head(bus, "default")
        return entry.record.version if entry is not None else 0

    async def _apply(self, change: Any, timeout: float = 1.0) -> None:
        """Make a change to the watched directory and wait until the builder published a version after it
        (or `timeout`, when the change translates to nothing new: watch-file polls every 0.05 s and the
        builder's debounce is at most 0.2 s), then give the edge and Envoy a moment. Without this, a test's
        first attempts could pass against the previous test's routes."""
        before = await self._head()
        change()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if (now := await self._head()) > before:
                # The debounce may fold more of the change into a next version: wait for it to settle.
                await asyncio.sleep(0.3)
                if await self._head() == now:
                    break
        await asyncio.sleep(0.2)

    async def _active_ports(self) -> set[int]:
        assert self.stack is not None and self.stack.envoy is not None
        ports = set()
        for entry in (await self.stack.envoy.listeners()).values():
            if "active_state" in entry:
                address = entry["active_state"]["listener"].get("address", {}).get("socket_address", {})
                ports.add(int(address.get("port_value", 0)))
        return ports

    async def _wait_listeners(self, ports: set[int], timeout: float | None = None) -> set[int]:
        """The ports still without an active listener after the convergence timeout (empty: converged).
        While no Gateway listener was ever seen (the base Gateways' included), the timeout is short: with
        the translation of Gateways missing, every test would otherwise wait the whole timeout for nothing."""
        if timeout is None:
            timeout = self.convergence_timeout if self.seen_ports else min(self.convergence_timeout, 1.0)
        deadline = time.monotonic() + timeout
        while True:
            active = await self._active_ports()
            self.seen_ports |= active
            missing = ports - active
            if not missing or time.monotonic() > deadline:
                return missing
            await asyncio.sleep(0.1)

    # -- traffic ---------------------------------------------------------------------------------------

    async def send(self, case: Case, prepared: Prepared) -> ResponseLike:
        """One round trip as the suite's client makes it, following redirects unless told not to."""
        scheme = case.scheme
        port = self.port_map[self._key(case)]
        method, target, host = prepared.method, prepared.path, prepared.host
        server_name = case.request.get("server_name") or host.split(":")[0]
        for _ in range(10):
            if case.protocol in ("H2", "H2C_PRIOR_KNOWLEDGE"):
                response: ResponseLike = await h2.request(
                    method,
                    "127.0.0.1",
                    port,
                    target,
                    authority=host,
                    headers=prepared.headers,
                    tls=self.h2_tls if case.protocol == "H2" else None,
                    server_name=server_name,
                    timeout=self.request_timeout,
                )
            else:
                response = await http.request(
                    method,
                    "127.0.0.1",
                    port,
                    target,
                    host_header=host,
                    headers=prepared.headers,
                    timeout=self.request_timeout,
                    tls=self.client_tls if scheme == "https" else None,
                    server_name=server_name if scheme == "https" else None,
                )
            location = next((v for k, v in response.headers if k.lower() == "location"), None)
            if case.request.get("unfollow_redirect") or not (300 <= response.status < 400) or not location:
                return response
            # Follow as Go's client does: to the Location's host and port (mapped to where the gateway
            # really listens), GET for 301/302/303.
            url = urllib.parse.urlsplit(urllib.parse.urljoin(f"{scheme}://{host}{target}", location))
            scheme = url.scheme or scheme
            suite_port = url.port or (443 if scheme == "https" else 80)
            port = self._follow_port(case, suite_port)
            host = url.netloc
            server_name = url.hostname or server_name
            target = url.path + (f"?{url.query}" if url.query else "")
            if response.status in (301, 302, 303):
                method = "GET"
        return response

    async def websocket(self, case: Case, prepared: Prepared) -> str | None:
        """A websocket case: dial ws://<gateway>/ws, send each of WEBSOCKET_MESSAGES and expect it back
        unchanged, then close; None when that passes."""
        url = f"ws://127.0.0.1:{self.port_map[self._key(case)]}{prepared.path}"
        timeout = aiohttp.ClientTimeout(total=self.request_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                ws = await session.ws_connect(
                    url, origin=case.websocket_origin, headers={"Host": prepared.host}
                )
            except aiohttp.WSServerHandshakeError as exc:
                return f"status {exc.status} not in [{SWITCHING_PROTOCOLS}] ({exc.message})"
            async with ws:
                for message in WEBSOCKET_MESSAGES:
                    if isinstance(message, str):
                        await ws.send_str(message)
                    else:
                        await ws.send_bytes(message)
                    reply = await ws.receive(self.request_timeout)
                    if reply.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        return f"websocket: sent {message!r}, got a {reply.type.name} message"
                    if problem := websocket_echo_problem(message, reply.data):
                        return problem
        return None

    async def attempt(self, case: Case) -> tuple[str | None, Prepared, ResponseLike | None]:
        """One attempt at a case: None and the response when it passes, else why not (no response for a
        websocket case)."""
        prepared = prepare(case)
        try:
            if case.websocket:
                return await self.websocket(case, prepared), prepared, None
            response = await self.send(case, prepared)
        except (
            OSError,
            TimeoutError,
            asyncio.IncompleteReadError,
            http.HttpError,
            h2.H2ClientError,
            H2Error,
            ValueError,
            aiohttp.ClientError,
        ) as exc:
            return f"request failed: {type(exc).__name__}: {exc}", prepared, None
        reason = evaluate(case, prepared, response, unmap_port=lambda p: self.unmap.get(p, p))
        return reason, prepared, response

    async def run_case(self, case: Case) -> Outcome:
        """Until REQUIRED_SUCCESSES passes in a row, or the window closes."""
        deadline = time.monotonic() + self.window
        successes = attempts = 0
        last = "no attempt made"
        while True:
            attempts += 1
            reason, prepared, _ = await self.attempt(case)
            if reason is None:
                successes += 1
                if successes >= REQUIRED_SUCCESSES:
                    follow_up = await self.follow_up(case, prepared)
                    if follow_up is None:
                        return Outcome(case, "passed", attempts=attempts)
                    last, successes = follow_up, 0
            else:
                last, successes = reason, 0
            if time.monotonic() > deadline:
                return Outcome(case, "failed", f"{last} (after {attempts} attempts)", attempts)
            await asyncio.sleep(0.02 if successes else 0.25)

    # -- checks after a consistent response ----------------------------------------------------------

    async def follow_up(self, case: Case, prepared: Prepared) -> str | None:
        """The extra checks some tests make once the case is consistent; None when they pass."""
        expect = case.expect
        if mirrors := expect.get("mirrored_to"):
            if any(m.get("percent") is not None for m in mirrors):
                return await self._percent_mirror(case, mirrors)
            return await self._mirrored(prepared, mirrors)
        if weights := expect.get("weights"):
            return await self._weights(case, weights)
        if case.test == "HTTPRouteRequestHeaderModifierBackendWeights":
            return await self._backend_header(case)
        return None

    def _mirror_hits(self, mirror: Mapping[str, Any], target: str) -> int:
        return sum(
            1
            for pod in self.pods.values()
            if pod.deployment == mirror["name"] and pod.namespace == mirror["namespace"]
            for request in self.echoes[pod.name].log
            if request.target == target
        )

    async def _mirrored(self, prepared: Prepared, mirrors: Sequence[Mapping[str, Any]]) -> str | None:
        deadline = time.monotonic() + 5
        while True:
            missing = [m["name"] for m in mirrors if not self._mirror_hits(m, prepared.path)]
            if not missing:
                return None
            if time.monotonic() > deadline:
                return f"request {prepared.path} not mirrored to {missing}"
            await asyncio.sleep(0.1)

    async def _burst(self, case: Case, count: int) -> list[tuple[Prepared, ResponseLike | None]]:
        """`count` attempts, 10 at a time."""
        gate = asyncio.Semaphore(10)

        async def one() -> tuple[Prepared, ResponseLike | None]:
            async with gate:
                _, prepared, response = await self.attempt(case)
                return prepared, response

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def _percent_mirror(self, case: Case, mirrors: Sequence[Mapping[str, Any]]) -> str | None:
        problems: list[str] = []
        for _ in range(3):
            results = await self._burst(case, 500)
            await asyncio.sleep(0.5)
            problems = []
            for mirror in mirrors:
                hits = sum(self._mirror_hits(mirror, prepared.path) for prepared, _ in results)
                p = float(mirror["percent"]) / 100
                spread = 3 * (500 * p * (1 - p)) ** 0.5
                if abs(hits - 500 * p) > spread:
                    problems.append(
                        f"{mirror['name']}: {hits} mirrored of 500, want {500 * p:.0f}±{spread:.0f}"
                    )
            if not problems:
                return None
        return "; ".join(problems)

    async def _weights(self, case: Case, weights: Mapping[str, float]) -> str | None:
        problems: list[str] = []
        for _ in range(3):
            counts: collections.Counter[str] = collections.Counter()
            for _, response in await self._burst(case, 500):
                if response is not None and response.status == 200:
                    counts[pod_backend(capture(response.body, "GET").pod)] += 1
            problems = weight_problems(counts, weights)
            if not problems:
                return None
        return "weights: " + "; ".join(problems)

    async def _backend_header(self, case: Case) -> str | None:
        for prepared, response in await self._burst(case, 100):
            if response is None or response.status != 200:
                return f"{prepared.path}: no 200 answer"
            captured = capture(response.body, prepared.method)
            values = [v for k, vs in captured.headers.items() if k.lower() == "backend" for v in vs]
            if len(values) != 1 or not captured.pod.startswith(values[0]):
                return f"pod {captured.pod!r} with Backend header values {values!r}"
        return None

    # -- tests ---------------------------------------------------------------------------------------------

    async def run_test(self, name: str, cases: list[Case]) -> TestResult:
        started = time.monotonic()
        result = TestResult(name, list(cases[0].features), cases[0].provisional)
        if name in SKIP_TESTS:
            result.outcomes = [Outcome(c, "skipped", SKIP_TESTS[name]) for c in cases]
            return result
        assert self.stack is not None
        stack = self.stack
        # The union over the cases: GatewayHTTPListenerIsolation's cases use two files between them.
        test_files = list(dict.fromkeys(m for c in cases for m in c.manifests if m != BASE))
        objects = [obj for relative in test_files for obj in self._objects(relative)]
        test_pods = manifests.pods_of(objects)
        await self._start_pods(test_pods)
        filename = f"10-{name}.yaml"
        await self._apply(lambda: stack.write(filename, self._runnable(objects)))
        missing = await self._wait_listeners({self.port_map[self._key(c)] for c in cases})
        if missing:
            result.converged = False
            ports = sorted(int(self.unmap[str(p)]) for p in missing)
            reason = f"no active Envoy listener for the Gateway port(s) {ports} (not translated?)"
            result.outcomes = [Outcome(c, "failed", reason) for c in cases]
        else:
            # HTTPRouteReferenceGrant deletes its ReferenceGrant between its cases (as the upstream test
            # does): the cases "after deleting" run once the file no longer holds it.
            later = [c for c in cases if "after deleting the relevant reference grant" in c.name]
            first = [c for c in cases if c not in later]
            outcomes = list(await asyncio.gather(*(self.run_case(c) for c in first)))
            if later:
                kept = [obj for obj in objects if obj.get("kind") != "ReferenceGrant"]
                await self._apply(lambda: stack.write(filename, self._runnable(kept)))
                outcomes += await asyncio.gather(*(self.run_case(c) for c in later))
            result.outcomes = sorted(outcomes, key=lambda o: o.case.index)
        await self._apply(lambda: stack.remove(filename))
        await self._stop_pods(test_pods)
        result.seconds = time.monotonic() - started
        return result

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        results: list[TestResult] = []
        await self.start()
        try:
            for name, cases in self.tests.items():
                result = await self.run_test(name, cases)
                results.append(result)
                print(
                    f"{name}: {result.count('passed')}/{len(result.outcomes)} passed"
                    f"{'' if result.converged else ' (not converged)'} in {result.seconds:.1f}s",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            await self.stop()
        return self.document(results, time.monotonic() - started)

    def document(self, results: list[TestResult], seconds: float) -> dict[str, Any]:
        def totals(selected: list[TestResult]) -> dict[str, int]:
            return {
                "tests": len(selected),
                "tests_passed": sum(
                    1 for r in selected if r.outcomes and r.count("passed") == len(r.outcomes)
                ),
                "cases": sum(len(r.outcomes) for r in selected),
                "passed": sum(r.count("passed") for r in selected),
                "failed": sum(r.count("failed") for r in selected),
                "skipped": sum(r.count("skipped") for r in selected),
            }

        every = totals(results)
        return {
            "name": NAME,
            # docs/design.md §8's result fields: the cases that failed, out of every case run; none may.
            "value": every["failed"],
            "unit": "failed cases",
            "baseline": every["cases"],
            "ratio": round(every["failed"] / every["cases"], 4) if every["cases"] else None,
            "budget": 0,
            "budget_on": "value",
            "pass": every["failed"] == 0,
            "suite": "kubernetes-sigs/gateway-api conformance (HTTP traffic tests, expectations.json)",
            "params": {
                "window_s": self.window,
                "required_successes": REQUIRED_SUCCESSES,
                "convergence_timeout_s": self.convergence_timeout,
                "gateway_class": CLASS_NAME,
                "port_map": {f"{ns}/{name}:{port}": v for (ns, name, port), v in self.port_map.items()},
                "machine": machine(),
            },
            "duration_s": round(seconds, 1),
            "totals": every,
            "core": totals([r for r in results if is_core(r.features)]),
            "extended": totals([r for r in results if not is_core(r.features)]),
            "tests": {r.name: r.as_json() for r in results},
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


def write(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    tmp.replace(path)


async def run(
    suite_dir: Path = DEFAULT_SUITE,
    *,
    window: float = 30.0,
    convergence_timeout: float = 10.0,
    only: Sequence[str] = (),
    output: Path | None = RESULTS_DIR / f"{NAME}.json",
    workdir: Path | None = None,
) -> dict[str, Any]:
    """Run the suite; write and return the results document."""
    with tempfile.TemporaryDirectory(prefix="xdsbus-conformance-") as tmp:
        runner = Runner(
            suite_dir, workdir or Path(tmp), window=window, convergence_timeout=convergence_timeout, only=only
        )
        document = await runner.run()
    if output is not None:
        write(document, output)
    return document


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_api_conformance",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--suite-dir", type=Path, default=DEFAULT_SUITE, help="the gateway-api data directory"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=30.0,
        help="seconds each case has to pass 3 times in a row (upstream: 30)",
    )
    parser.add_argument(
        "--convergence-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for a test's Gateway listeners to be active in Envoy",
    )
    parser.add_argument("--tests", default="", help="comma-separated test names (default: all)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / f"{NAME}.json")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the stack's files and logs here")
    args = parser.parse_args(argv)
    random.seed()
    only = [t for t in args.tests.replace(",", " ").split() if t]
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    document = asyncio.run(
        run(
            args.suite_dir,
            window=args.window,
            convergence_timeout=args.convergence_timeout,
            only=only,
            output=args.output,
            workdir=args.workdir,
        )
    )
    totals = document["totals"]
    print(
        f"{NAME}: {totals['passed']}/{totals['cases']} cases passed ({totals['failed']} failed, "
        f"{totals['skipped']} skipped), {totals['tests_passed']}/{totals['tests']} tests fully passed, "
        f"core {document['core']['passed']}/{document['core']['cases']}, "
        f"extended {document['extended']['passed']}/{document['extended']['cases']}, "
        f"{document['duration_s']}s -> {args.output}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
