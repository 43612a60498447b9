"""An approximation of RE2's syntax check, for patterns Envoy will compile with RE2.

Python's `re` accepts most of RE2's syntax; what RE2 lacks (lookaround, backreferences, atomic groups,
possessive quantifiers, conditionals, `\\Z`) is rejected here first, and RE2-only syntax Python does not
know (`\\z`, `\\pL`, `\\p{Greek}`) is rewritten to an equivalent before Python compiles the rest.
"""

from __future__ import annotations

import re
import warnings

# Go regexp.QuoteMeta escapes exactly these.
META_CHARS = frozenset("\\.+*?()|[]{}^$")
_REPEAT = re.compile(r"\{(\d+)(?:,(\d*))?\}")
_MAX_REPEAT = 1000


def quote_meta(text: str) -> str:
    """A pattern matching `text` literally (Go regexp.QuoteMeta)."""
    return "".join("\\" + c if c in META_CHARS else c for c in text)


def _scan(pattern: str) -> tuple[str | None, str]:
    """(reason RE2 rejects the pattern or None, the pattern rewritten for Python's re)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            if i + 1 >= n:
                return "ends with a lone backslash", ""
            nxt = pattern[i + 1]
            if nxt in "123456789":
                return "uses a backreference, which RE2 does not support", ""
            if nxt == "Z":
                return "uses \\Z, which RE2 does not support (use \\z)", ""
            if nxt in "gk" and not in_class:
                return f"uses \\{nxt}, which RE2 does not support", ""
            if nxt == "z":
                out.append("\\Z")
                i += 2
                continue
            if nxt in "pP":
                # Unicode class: \pL or \p{Name}; any character stands in for it.
                end = i + 2
                if end < n and pattern[end] == "{":
                    close = pattern.find("}", end)
                    if close < 0:
                        return "has an unterminated \\p{...} class", ""
                    end = close + 1
                else:
                    end += 1
                out.append("a" if in_class else ".")
                i = end
                continue
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if in_class:
            if c == "]":
                in_class = False
            elif c == "[" and pattern.startswith("[:", i):
                close = pattern.find(":]", i + 2)
                if close > 0:
                    out.append("a")
                    i = close + 2
                    continue
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            out.append(c)
            i += 1
            # A leading ] (or ^]) is literal inside a class.
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("]")
                i += 1
            continue
        if c == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2 : i + 4]
            if rest[:1] in ("=", "!") or rest in ("<=", "<!"):
                return "uses a lookaround assertion, which RE2 does not support", ""
            if rest[:1] == ">":
                return "uses an atomic group, which RE2 does not support", ""
            if rest[:1] == "(":
                return "uses a conditional, which RE2 does not support", ""
            if rest == "P=":
                return "uses a backreference, which RE2 does not support", ""
            if rest[:1] == "<":
                # RE2 also spells named groups (?<name>...); Python only knows (?P<name>...).
                out.append("(?P")
                i += 2
                continue
        if c in "*+?}" and i + 1 < n and pattern[i + 1] == "+":
            return "uses a possessive quantifier, which RE2 does not support", ""
        if c == "{":
            m = _REPEAT.match(pattern, i)
            if m and any(g and int(g) > _MAX_REPEAT for g in m.groups()):
                return f"repeats more than {_MAX_REPEAT} times, which RE2 does not allow", ""
        out.append(c)
        i += 1
    return None, "".join(out)


def re2_problem(pattern: str) -> str | None:
    """Why RE2 (as Envoy uses it) would reject `pattern`, or None when it looks valid."""
    reason, python_pattern = _scan(pattern)
    if reason:
        return reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(python_pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            return f"is not a valid regular expression ({exc})"
    return None
