"""The check Envoy applies to every regex it is given, run with the real RE2 library before publishing.

Envoy compiles each `safe_regex` (route, header and query matches, regex rewrites) with RE2's default
options and refuses the whole route configuration when a pattern does not parse or its compiled
program is larger than the error level of `re2.max_program_size`. Every host shares that route
configuration, so one such pattern would stop every host's updates (docs/design.md §6): translators
reject the object that carries it instead.
"""

from __future__ import annotations

import re2

# Envoy's default error level for `re2.max_program_size` (runtime key
# `re2.max_program_size.error_level`): a larger program is refused.
ENVOY_MAX_PROGRAM_SIZE = 100

# Go regexp.QuoteMeta escapes exactly these.
META_CHARS = frozenset("\\.+*?()|[]{}^$")

# RE2's default options, as Envoy uses them (RE2::Quiet: errors are returned, not logged to stderr).
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def quote_meta(text: str) -> str:
    """A pattern matching `text` literally (Go regexp.QuoteMeta)."""
    return "".join("\\" + c if c in META_CHARS else c for c in text)


def re2_program_size(pattern: str) -> int:
    """The size of RE2's compiled program for a valid `pattern` (what Envoy compares to its limit)."""
    return int(re2.compile(pattern, _OPTIONS).programsize)


def re2_problem(pattern: str) -> str | None:
    """Why Envoy would refuse `pattern` (RE2 cannot parse it, or its program is over Envoy's size
    limit), or None when Envoy accepts it."""
    try:
        size = re2.compile(pattern, _OPTIONS).programsize
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        return f"is not a valid RE2 regular expression ({detail})"
    if size > ENVOY_MAX_PROGRAM_SIZE:
        return (
            f"has RE2 program size {size}, over Envoy's limit of {ENVOY_MAX_PROGRAM_SIZE} "
            "(re2.max_program_size)"
        )
    return None
