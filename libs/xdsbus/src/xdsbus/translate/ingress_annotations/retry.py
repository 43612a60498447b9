"""Retry annotations (Higress retry.go, N+H): proxy-next-upstream-tries, proxy-next-upstream-timeout,
proxy-next-upstream. Any of the three switches retries on, with Higress's defaults for the others.

nginx conditions → Envoy `retry_on`:
* `error`: `5xx` as Higress maps it, plus `reset` and `connect-failure`, which is what nginx means by an
  error (a failed connection or a connection closed before the response); Envoy's `5xx` already covers
  both, listing them keeps the intent readable.
* `timeout`, `invalid_header`: `5xx` (Higress).
* `http_NNN`: `retriable-status-codes` with NNN.
* `non_idempotent`: nothing. nginx by default does not retry POST/LOCK/PATCH and this lifts that; Envoy
  retries any method, so the condition is always met.
* `off`: no retries (attempts 0).
"""

from __future__ import annotations

import re

from xdsbus.model.routes import RetryPolicy
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, split_list

DEFAULT_ATTEMPTS = 3
DEFAULT_RETRY_ON = ("5xx",)
RETRIABLE_STATUS_CODES = "retriable-status-codes"
_STATUS = re.compile(r"http_([0-9]{3})")
_CONDITIONS = {
    "error": ("5xx", "reset", "connect-failure"),
    "timeout": ("5xx",),
    "invalid_header": ("5xx",),
    "non_idempotent": (),
}


def _conditions(text: str) -> tuple[tuple[str, ...], tuple[int, ...]] | None:
    """(retry_on, status codes), or None for `off`."""
    items = split_list(text) if "," in text else text.split()
    if "off" in items:
        return None
    retry_on: list[str] = []
    codes: list[int] = []
    unknown: list[str] = []
    for item in items:
        status = _STATUS.fullmatch(item)
        if status:
            code = int(status.group(1))
            if not 100 <= code <= 599:
                unknown.append(item)
            elif code not in codes:
                codes.append(code)
        elif item in _CONDITIONS:
            retry_on.extend(c for c in _CONDITIONS[item] if c not in retry_on)
        else:
            unknown.append(item)
    if unknown:
        raise ValueError(
            f"has unknown condition(s) {', '.join(unknown)} "
            "(known: error, timeout, invalid_header, http_NNN, non_idempotent, off)"
        )
    if codes:
        retry_on.append(RETRIABLE_STATUS_CODES)
    return tuple(retry_on), tuple(codes)


# Bounds that keep values inside Envoy's types; larger ones are typos, reported as such.
MAX_TRIES = 100
MAX_TIMEOUT_SECONDS = 24 * 3600


def parse_retry(r: AnnotationReader) -> RetryPolicy | None:
    if not (
        r.has("proxy-next-upstream-tries")
        or r.has("proxy-next-upstream-timeout")
        or r.has("proxy-next-upstream")
    ):
        return None
    attempts = r.integer("proxy-next-upstream-tries", minimum=0, maximum=MAX_TRIES)
    timeout = r.integer("proxy-next-upstream-timeout", minimum=0, maximum=MAX_TIMEOUT_SECONDS)
    policy = RetryPolicy(
        attempts=DEFAULT_ATTEMPTS if attempts is None else attempts,
        retry_on=DEFAULT_RETRY_ON,
        per_try_timeout_ms=(timeout or 0) * 1000,
    )
    found = r.get("proxy-next-upstream", _conditions)
    if found is None:
        return policy
    if found.value is None:
        return RetryPolicy(attempts=0, retry_on=())
    retry_on, codes = found.value
    return RetryPolicy(
        attempts=policy.attempts,
        retry_on=retry_on,
        retriable_status_codes=codes,
        per_try_timeout_ms=policy.per_try_timeout_ms,
    )
