"""Local rate limit per route (Higress local_rate_limit.go, H only).

`higress.io/route-limit-rpm` or `route-limit-rps` (rpm wins when both are valid) sets a token bucket
filled with that many tokens every minute or second; `route-limit-burst-multiplier` (default 5) makes
its capacity rate × multiplier. Requests over the limit are answered 429. Higress drops a value it cannot
parse without a word and, with rate 0 or a negative value, emits a bucket Envoy refuses; here each such
value is a problem naming the annotation and the limit is left off (or the other rate used).
"""

from __future__ import annotations

from xdsbus.model.routes import LocalRateLimit
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, int_range

DEFAULT_BURST_MULTIPLIER = 5
# Higress converts to uint32 (Envoy's max_tokens and tokens_per_fill); a larger bucket would wrap.
_UINT32_MAX = 2**32 - 1
_RATE = int_range(1, _UINT32_MAX)


def parse_rate_limit(r: AnnotationReader) -> LocalRateLimit | None:
    """The route's token bucket, or None when neither rate annotation is usable."""
    if not (r.has("route-limit-rpm", higress_only=True) or r.has("route-limit-rps", higress_only=True)):
        return None
    multiplier = r.get("route-limit-burst-multiplier", int_range(1, _UINT32_MAX), higress_only=True)
    factor = DEFAULT_BURST_MULTIPLIER if multiplier is None else multiplier.value
    for name, seconds in (("route-limit-rpm", 60), ("route-limit-rps", 1)):
        found = r.get(name, _RATE, higress_only=True)
        if found is None:
            continue
        burst = found.value * factor
        if burst > _UINT32_MAX:
            r.add(
                found.key,
                found.raw,
                f"times the burst multiplier {factor} is {burst}, over Envoy's limit {_UINT32_MAX}",
            )
            return None
        if seconds == 60:
            for key in r.keys("route-limit-rps", higress_only=True):
                r.add(key, r.annotations[key], "is ignored: route-limit-rpm is set and wins")
        return LocalRateLimit(tokens_per_fill=found.value, max_tokens=burst, fill_seconds=seconds)
    return None
