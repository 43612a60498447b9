"""Resources render as JSON wherever they are read: every proto module a translator module imports is
registered by xdsbus.translate.envoy_types, which the dump imports. A missing one made the edge's
/debug/configz fail on the gzip compressor of higress-config (found in tests/e2e/test_sealed_at_rest.py)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import any_pb2

import xdsbus.translate
from xdsbus.translate.envoy_types import PROTO_MODULES

TRANSLATE = Path(xdsbus.translate.__file__).parent


def _imported_proto_modules() -> set[str]:
    found = set()
    for path in TRANSLATE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] in ("envoy", "xds", "udpa")
            ):
                found |= {
                    f"{node.module}.{alias.name}" for alias in node.names if alias.name.endswith("_pb2")
                }
    return found


def test_every_proto_module_of_the_translator_is_registered() -> None:
    missing = _imported_proto_modules() - {module.__name__ for module in PROTO_MODULES}
    assert not missing, f"add to xdsbus/translate/envoy_types.py: {sorted(missing)}"


def test_the_dump_renders_a_gzip_filter_without_the_translator() -> None:
    # Built here, where every type is known, then rendered by a fresh interpreter that imports the dump
    # but not the translator, as the edge does.
    library = any_pb2.Any()
    library.Pack(gzip_pb2.Gzip())
    compressor = compressor_pb2.Compressor()
    compressor.compressor_library.name = "gzip"
    compressor.compressor_library.typed_config.CopyFrom(library)
    manager = hcm.HttpConnectionManager(stat_prefix="x")
    manager.http_filters.add(name="envoy.filters.http.compressor").typed_config.Pack(compressor)
    listener = listener_pb2.Listener(name="l")
    listener.filter_chains.add().filters.add(name="hcm").typed_config.Pack(manager)
    wrapped = any_pb2.Any()
    wrapped.Pack(listener)
    render = (
        "import sys\n"
        "from xdsbus.ledger.dump import to_json\n"
        "assert 'xdsbus.translate.translator' not in sys.modules\n"
        "print(to_json(sys.stdin.buffer.read())['name'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", render], input=wrapped.SerializeToString(), capture_output=True, check=False
    )
    assert out.returncode == 0, out.stderr.decode()
    assert out.stdout.decode().strip() == "l"
