"""Chaos: the whole stack on a three-node NATS JetStream cluster, one fault at a time (issue 14)."""

from __future__ import annotations

import pytest

from xdsbus_dev.harness.stack import edge_installed


@pytest.fixture(autouse=True)
def _needs_the_edge() -> None:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
