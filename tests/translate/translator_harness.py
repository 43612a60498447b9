"""A FoldState and a Translator driven object by object, as the builder does, and readers for what the
translator published: Envoy messages, resource names and bytes, statuses. Secrets are sealed with a
SecretBox (as watchers publish them) unless told otherwise.

Every harness can check itself against a full build of its state (`assert_matches_full_build`): the
incremental translator must publish exactly what a replay would."""

from __future__ import annotations

import base64
import os
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from xdsbus.contract.resources import Changes
from xdsbus.contract.status import ObjectStatus
from xdsbus.contract.type_urls import LISTENER, ROUTE, SECRET
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.secretbox import SecretBox
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.certs import KeyPair, TestCA

SOURCE = "test/unit"
HTTP_LISTENER = "0.0.0.0_80"
HTTPS_LISTENER = "0.0.0.0_443"
HTTP_ROUTES = "http.80"
N = "nginx.ingress.kubernetes.io/"

# One CA and a few leaf certificates for the whole test session: EC keys, made in milliseconds.
CA = TestCA()
A_CERT = CA.issue("a.example.com")
A_CERT_ROTATED = CA.issue("a.example.com")
B_CERT = CA.issue("b.example.com")
OTHER_CA = TestCA("another test CA")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def secret_body(
    name: str,
    data: dict[str, bytes | str],
    *,
    namespace: str = "default",
    type_: str = "kubernetes.io/tls",
) -> dict[str, Any]:
    """A Secret as the API returns it: `data` base64-encoded (a str value is put in as it is)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "data": {k: v if isinstance(v, str) else b64(v) for k, v in data.items()},
    }


def tls_secret(
    name: str, pair: KeyPair = A_CERT, *, ca: bytes | None = None, namespace: str = "default"
) -> dict[str, Any]:
    data: dict[str, bytes | str] = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    if ca is not None:
        data["ca.crt"] = ca
    return secret_body(name, data, namespace=namespace)


def ca_secret(name: str, ca: bytes = CA.cert_pem, *, namespace: str = "default") -> dict[str, Any]:
    return secret_body(name, {"ca.crt": ca}, namespace=namespace, type_="Opaque")


def service_body(name: str) -> dict[str, Any]:
    """A Service `name` in `default` with one HTTP port, 80 to 8080."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    }


def ingress_body(
    name: str,
    rules: list[tuple[str, list[tuple[str, str, int]]]],
    *,
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    tls: list[tuple[list[str], str]] | None = None,
    default_backend: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """`rules`: (host, [(path, service, port)]), Prefix paths; `tls`: ([hosts], secretName)."""
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": path,
                            "pathType": "Prefix",
                            "backend": {"service": {"name": svc, "port": {"number": port}}},
                        }
                        for path, svc, port in paths
                    ]
                },
            }
            for host, paths in rules
        ]
    }
    if tls is not None:
        spec["tls"] = [{"hosts": hosts, "secretName": secret} for hosts, secret in tls]
    if default_backend is not None:
        svc, port = default_backend
        spec["defaultBackend"] = {"service": {"name": svc, "port": {"number": port}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "annotations": annotations or {},
        },
        "spec": spec,
    }


def unpack(body: bytes, cls: type[Message]) -> Any:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(body)
    msg = cls()
    assert wrapper.Unpack(msg), wrapper.type_url
    return msg


class Harness:
    """Folds objects one update at a time (or several in one update) and reads the resources back."""

    def __init__(
        self,
        *,
        secret_box: SecretBox | bool | None = True,
        seal: SecretBox | None = None,
        settings: TranslatorSettings | None = None,
    ) -> None:
        """`secret_box`: the translator's key (True: a fresh one, None: no key); `seal`: the key Secrets
        are sealed with (default: the translator's; none at all when neither is set)."""
        box = SecretBox(os.urandom(32)) if secret_box is True else secret_box or None
        self.box = box
        self.seal_box = seal or box
        self.state = FoldState()
        self.settings = settings
        self.translator = Translator(settings, secret_box=box)
        self.translator.full_build(self.state)
        self.seq = 0

    # -- events ---------------------------------------------------------------------------------

    def event(self, body: dict[str, Any], *, sealed: bool = True) -> Event:
        meta = body["metadata"]
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        kind = body["kind"]
        if kind == "Secret" and sealed and self.seal_box is not None:
            body = self.seal_box.seal(body, source=SOURCE, kind=kind, key=key)
        return Event(source=SOURCE, kind=kind, key=key, op=Op.UPSERT, rev=str(self.seq + 1), body=body)

    def put(self, *bodies: dict[str, Any], sealed: bool = True) -> None:
        """Upsert the objects, all in one translator update."""
        self.update([self.event(b, sealed=sealed) for b in bodies])

    def delete(self, kind: str, key: str) -> None:
        self.update([Event(source=SOURCE, kind=kind, key=key, op=Op.DELETE)])

    def remove(self, *bodies: dict[str, Any]) -> None:
        """Delete the objects of these bodies, all in one translator update."""
        self.update(
            [
                Event(
                    source=SOURCE,
                    kind=b["kind"],
                    key=f"{b['metadata']['namespace']}/{b['metadata']['name']}",
                    op=Op.DELETE,
                )
                for b in bodies
            ]
        )

    def update(self, events: list[Event]) -> None:
        changed = []
        for event in events:
            self.seq += 1
            changed.extend(apply(self.state, self.seq, event))
        self.translator.update(self.state, changed)

    def commit(self) -> Changes:
        return self.translator.table.commit()

    # -- reading --------------------------------------------------------------------------------

    def names(self, type_url: str) -> set[str]:
        return {key.name for key, _ in self.translator.table.items() if key.type_url == type_url}

    def all_names(self) -> set[tuple[str, str]]:
        return {(key.type_url.rsplit(".", 1)[-1], key.name) for key, _ in self.translator.table.items()}

    def body(self, type_url: str, name: str) -> bytes | None:
        res = self.translator.table.get(type_url, name)
        return None if res is None else res.body

    def get(self, type_url: str, name: str, cls: type[Message]) -> Any:
        body = self.body(type_url, name)
        assert body is not None, f"{type_url} {name} missing; have {sorted(self.all_names())}"
        return unpack(body, cls)

    def route_config(self, name: str = HTTP_ROUTES) -> route_pb2.RouteConfiguration:
        return self.get(ROUTE, name, route_pb2.RouteConfiguration)

    def vhost(self, host: str, config: str = HTTP_ROUTES) -> Any:
        found = [vh for vh in self.route_config(config).virtual_hosts if list(vh.domains) == [host]]
        assert len(found) == 1, f"{host} in {config}: {found}"
        return found[0]

    def https_listener(self) -> listener_pb2.Listener:
        return self.get(LISTENER, HTTPS_LISTENER, listener_pb2.Listener)

    def chains(self) -> dict[str, tuple[str, tls_pb2.DownstreamTlsContext]]:
        """The HTTPS listener's filter chains: server name -> (RDS name, TLS context)."""
        out: dict[str, tuple[str, tls_pb2.DownstreamTlsContext]] = {}
        for chain in self.https_listener().filter_chains:
            manager = hcm.HttpConnectionManager()
            assert chain.filters[0].typed_config.Unpack(manager)
            context = tls_pb2.DownstreamTlsContext()
            assert chain.transport_socket.typed_config.Unpack(context)
            for name in chain.filter_chain_match.server_names:
                out[name] = (manager.rds.route_config_name, context)
        return out

    def secret(self, name: str) -> secret_pb2.Secret:
        return self.get(SECRET, name, secret_pb2.Secret)

    def status(self, kind: str, key: str) -> ObjectStatus | None:
        return self.translator.statuses.get(ObjectRef(kind, SOURCE, key))

    def warnings(self, key: str) -> list[str]:
        status = self.status("Ingress", key)
        assert status is not None, f"no status for Ingress {key}"
        return status.warnings

    # -- determinism ----------------------------------------------------------------------------

    def assert_matches_full_build(self) -> None:
        """A fresh translator built from the folded state publishes the same resources and verdicts."""
        fresh = Translator(self.settings, secret_box=self.box)
        fresh.full_build(self.state)
        mine = {key: res.sha256 for key, res in self.translator.table.items()}
        theirs = {key: res.sha256 for key, res in fresh.table.items()}
        assert mine == theirs, (sorted(mine.keys() ^ theirs.keys()), "incremental differs from a full build")
        assert self.translator.statuses == fresh.statuses
