"""`xdsbus-edge`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.logs import setup_logging
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox, SecretKeyError
from xdsbus.service import run_service
from xdsbus.service_flags import ServiceParser, add_common_flags, positive_float, readable_file
from xdsbus.wasm.credentials import DockerConfig
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus_edge.access_policy import PolicyError, load_policy
from xdsbus_edge.app import Edge, EdgeConfig, split_host_port
from xdsbus_edge.limits import add_limit_flags, limits_from_args
from xdsbus_edge.scopes import SCOPE_PATTERN
from xdsbus_edge.wasm_store import DEFAULT_MAX_BYTES
from xdsbus_edge.xds_tls import ServerTls, is_loopback

log = logging.getLogger("xdsbus_edge.main")

# Cyclic-collector thresholds. A push to N streams keeps a few dozen small objects per stream alive
# across its awaits (coroutines, futures, gRPC's write state) until the write is done, and they are freed
# by reference counting right after. At the default (700, 10, 10) the collector ran about 70 times per
# push to 1,000 streams, found those objects alive, promoted them, and so set off a full collection of
# the whole heap every few pushes: ~115 ms of collector per push of 1,000 streams, a third of the edge's
# CPU (bench/edge_fanout_1000.py); at 50,000 it runs about once in twenty pushes. As in the builder.
GC_THRESHOLDS = (50_000, 20, 100)


def _listen(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _scopes(value: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in value.split(",") if s.strip())
    for scope in scopes:
        if not SCOPE_PATTERN.match(scope):
            raise argparse.ArgumentTypeError(f"invalid scope {scope!r}")
    return scopes


def _switch(value: str) -> bool:
    return value == "true"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable. Exits with status 2 on a bad
    value."""
    p = ServiceParser(prog="xdsbus-edge", description="Serve the ledger to Envoy over xDS.")
    p.env_flag(
        "--xds-listen", "XDSBUS_XDS_LISTEN", type=_listen, default="0.0.0.0:18000", help="gRPC xDS address"
    )
    p.env_flag(
        "--http-listen",
        "XDSBUS_HTTP_LISTEN",
        type=_listen,
        default="0.0.0.0:15014",
        help="address of /metrics, /ready and /live",
    )
    p.env_flag(
        "--debug-listen",
        "XDSBUS_DEBUG_LISTEN",
        type=_listen,
        default="127.0.0.1:15016",
        help="address of the /debug pages (what each proxy is sent): keep it on loopback",
    )
    p.env_flag(
        "--scopes",
        "XDSBUS_SCOPES",
        type=_scopes,
        default=("default",),
        shown_default="default",
        help="comma-separated scopes loaded at start and required by /ready; others load when a proxy asks",
    )
    p.env_flag(
        "--lazy-scopes",
        "XDSBUS_LAZY_SCOPES",
        type=_switch,
        choices=("true", "false"),
        default=True,
        shown_default="true",
        help="follow scopes not listed in --scopes when a proxy asks for them",
    )
    p.env_flag(
        "--ready-max-lag",
        "XDSBUS_READY_MAX_LAG",
        type=positive_float,
        default=30.0,
        help="seconds NATS may be lost, or a scope's served version stay behind the ledger head,"
        " before /ready fails",
    )
    p.env_flag(
        "--edge-id",
        "XDSBUS_EDGE_ID",
        default="",
        shown_default="<hostname>-<xDS port>",
        help="this edge's name in the proxy status it publishes (KV xdsbus_proxies, xdsbus proxy-status)",
    )
    _add_xds_security_flags(p)
    _add_wasm_flags(p)
    add_limit_flags(p)
    add_common_flags(p)
    args = p.parse(argv)
    _check_xds_security(p, args)
    _check_wasm(p, args)
    return args


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {number}")
    return number


def _add_wasm_flags(p: ServiceParser) -> None:
    """The module port Envoy fetches WasmPlugin modules from, and the module cache
    (docs/wasm-modules.md)."""
    p.env_flag(
        "--wasm-listen",
        "XDSBUS_WASM_LISTEN",
        type=_listen,
        default="127.0.0.1:0",
        shown_default="127.0.0.1:0 (a free port, logged at start)",
        help="address Envoy fetches wasm modules from (/modules/<sha256>.wasm, the bootstrap cluster"
        " xdsbus_wasm_modules): give the port Envoy's bootstrap names; in a pod, an address the gateway"
        " pods reach",
    )
    p.env_flag(
        "--wasm-cache-dir",
        "XDSBUS_WASM_CACHE_DIR",
        default=str(Path(tempfile.gettempdir()) / "xdsbus-wasm"),
        help="directory of the verified wasm modules the edge fetched",
    )
    p.env_flag(
        "--wasm-cache-max-bytes",
        "XDSBUS_WASM_CACHE_MAX_BYTES",
        type=_positive_int,
        default=DEFAULT_MAX_BYTES,
        help="bytes of modules kept on disk; the least recently served go first",
    )
    p.env_flag(
        "--wasm-registry-auth",
        "XDSBUS_WASM_REGISTRY_AUTH",
        type=readable_file,
        default=None,
        shown_default="none: anonymous pulls",
        help="docker config.json with the credentials for pulling oci:// modules (e.g. a mounted"
        " kubernetes.io/dockerconfigjson Secret)",
    )
    p.env_flag(
        "--wasm-fetch-timeout",
        "XDSBUS_WASM_FETCH_TIMEOUT",
        type=positive_float,
        default=30.0,
        help="seconds one module fetch (token, manifest and blob) may take",
    )


def _check_wasm(p: ServiceParser, args: argparse.Namespace) -> None:
    """Read --wasm-registry-auth into `args.wasm_auth`; a usage error names the flag."""
    args.wasm_auth = None
    if args.wasm_registry_auth:
        try:
            args.wasm_auth = DockerConfig.parse(
                Path(args.wasm_registry_auth).read_bytes(), args.wasm_registry_auth
            )
        except (OSError, ModuleFetchError) as exc:
            p.fail("wasm_registry_auth", str(exc))


def _add_xds_security_flags(p: ServiceParser) -> None:
    """TLS, mTLS and the access policy of the xDS port (docs/design.md §10)."""
    p.env_flag(
        "--xds-tls-cert",
        "XDSBUS_XDS_TLS_CERT",
        type=readable_file,
        default=None,
        shown_default="none",
        help="PEM certificate (chain) of the xDS port; TLS is required unless --xds-plaintext",
    )
    p.env_flag(
        "--xds-tls-key",
        "XDSBUS_XDS_TLS_KEY",
        type=readable_file,
        default=None,
        shown_default="none",
        help="PEM private key of --xds-tls-cert",
    )
    p.env_flag(
        "--xds-client-ca",
        "XDSBUS_XDS_CLIENT_CA",
        type=readable_file,
        default=None,
        shown_default="none",
        help="PEM CA bundle of proxies' client certificates: turns on mTLS (client certificate required)",
    )
    p.env_flag(
        "--xds-access-policy",
        "XDSBUS_XDS_ACCESS_POLICY",
        type=readable_file,
        default=None,
        shown_default="none: every proxy the transport accepts reads every scope",
        help="YAML/JSON file mapping proxy identities (certificate SAN, bearer token) to scopes and Gateways",
    )
    p.env_flag(
        "--xds-plaintext",
        "XDSBUS_XDS_PLAINTEXT",
        type=_switch,
        choices=("true", "false"),
        default=False,
        shown_default="false",
        help="serve xDS without TLS; allowed only when --xds-listen is a loopback address",
    )


def _check_xds_security(p: ServiceParser, args: argparse.Namespace) -> None:
    """Turn the security flags into `args.xds_tls` and `args.access_policy`; a usage error (exit 2) names
    the flag at fault."""
    args.xds_tls = None
    if args.xds_plaintext:
        if args.xds_tls_cert or args.xds_client_ca:
            p.fail("xds_plaintext", "cannot be combined with --xds-tls-cert or --xds-client-ca")
        host = split_host_port(args.xds_listen)[0]
        if not is_loopback(host):
            p.fail("xds_plaintext", f"plaintext xDS is allowed on loopback only, not on {args.xds_listen}")
    elif not args.xds_tls_cert or not args.xds_tls_key:
        missing = "xds_tls_key" if args.xds_tls_cert else "xds_tls_cert"
        p.fail(
            missing,
            "xDS is served over TLS: give --xds-tls-cert and --xds-tls-key (or --xds-plaintext on loopback)",
        )
    else:
        ca = Path(args.xds_client_ca) if args.xds_client_ca else None
        args.xds_tls = ServerTls(Path(args.xds_tls_cert), Path(args.xds_tls_key), ca)
    args.access_policy = None
    if args.xds_access_policy:
        try:
            args.access_policy = load_policy(Path(args.xds_access_policy))
        except PolicyError as exc:
            p.fail("xds_access_policy", str(exc))


def _keyring() -> SecretBox | None:
    """The keyring that opens the ledger's sealed Secret bodies, found like the builder's."""
    try:
        box = SecretBox.from_env(default_key_file=LOCAL_KEY_FILE)
    except (SecretKeyError, OSError) as exc:
        # OSError: the local key file could not be created (a read-only filesystem); the edge still runs.
        log.warning("no secret key (%s): versions holding a sealed Secret are not served", exc)
        return None
    log.info("keyring: %s", box.describe())
    return box


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the xdsbus-edge command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    gc.set_threshold(*GC_THRESHOLDS)
    config = EdgeConfig(
        xds_listen=args.xds_listen,
        http_listen=args.http_listen,
        debug_listen=args.debug_listen,
        keyring=_keyring(),
        scopes=args.scopes,
        lazy_scopes=args.lazy_scopes,
        xds_tls=args.xds_tls,
        access_policy=args.access_policy,
        limits=limits_from_args(args),
        ready_max_lag=args.ready_max_lag,
        wasm_listen=args.wasm_listen,
        wasm_cache_dir=Path(args.wasm_cache_dir),
        wasm_cache_max_bytes=args.wasm_cache_max_bytes,
        wasm_registry_auth=args.wasm_auth,
        wasm_fetch_timeout=args.wasm_fetch_timeout,
        edge_id=args.edge_id,
    )
    settings = BusSettings.from_env(args.nats_url)

    async def serve(stop: asyncio.Event) -> None:
        # A stop asked while NATS is unreachable (or refuses the credentials) ends the service at once.
        bus = await connect_unless_stopped(settings, name=f"xdsbus-edge/{os.getpid()}", stop=stop)
        if bus is None:
            return
        edge = Edge(bus, config)
        try:
            await edge.start()
            await stop.wait()
        finally:
            await edge.stop()
            await bus.close()

    return run_service(serve)


if __name__ == "__main__":
    raise SystemExit(main())
