"""End-to-end: the whole stack (nats-server, builder, edges, watch-file, echo backends, a real Envoy)."""

from __future__ import annotations

import pytest

from xdsbus_dev.harness.stack import edge_installed


@pytest.fixture(autouse=True)
def _needs_the_edge() -> None:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
