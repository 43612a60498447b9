"""How hard the fuzz tests try: a small budget in `make test` (derandomized, so a run is reproducible),
many more random examples from `make fuzz` (XDSBUS_FUZZ_EXAMPLES)."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_ENV = "XDSBUS_FUZZ_EXAMPLES"
QUICK_EXAMPLES = 150


def fuzz_settings(quick: int = QUICK_EXAMPLES) -> settings:
    """Settings for one fuzz test: `quick` examples by default, XDSBUS_FUZZ_EXAMPLES when set."""
    examples = os.environ.get(_ENV)
    return settings(
        max_examples=int(examples) if examples else quick,
        derandomize=examples is None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
