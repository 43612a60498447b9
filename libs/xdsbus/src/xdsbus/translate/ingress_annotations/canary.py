"""Canary annotations (Higress canary.go, N+H).

Precedence as Higress reads them: canary-by-header-value > canary-by-header-pattern > canary-by-cookie >
canary-weight. A canary is "by header" when it names a header or a cookie, else "by weight".
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from xdsbus.model.routes import HeaderMatch, StringMatchKind
from xdsbus.translate.ingress_annotations.re2 import quote_meta, re2_problem
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, parse_token

DEFAULT_WEIGHT_TOTAL = 100


class CanarySpec(msgspec.Struct, frozen=True, kw_only=True):
    """How a canary Ingress takes traffic from the normal route with the same match."""

    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""
    weight: int = 0
    weight_total: int = DEFAULT_WEIGHT_TOTAL

    @property
    def by_header(self) -> bool:
        return bool(self.header or self.cookie)

    def header_match(self) -> HeaderMatch | None:
        """The request condition of a by-header canary (None for a by-weight one)."""
        if self.header:
            name = self.header.lower()
            if self.header_value:
                return HeaderMatch(name=name, kind=StringMatchKind.REGEX, value=f"always|{self.header_value}")
            if self.header_pattern:
                return HeaderMatch(name=name, kind=StringMatchKind.REGEX, value=f".*{self.header_pattern}.*")
            return HeaderMatch(name=name, kind=StringMatchKind.EXACT, value="always")
        if self.cookie:
            return HeaderMatch(
                name="cookie",
                kind=StringMatchKind.REGEX,
                value=rf"^(.*?;\s*)?({quote_meta(self.cookie)}=always)(;.*)?$",
            )
        return None


def _regex(template: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        pattern = template.format(text)
        reason = re2_problem(pattern)
        if reason:
            raise ValueError(f"makes a header regex {pattern!r} that {reason}")
        return text

    return parse


def parse_canary(r: AnnotationReader) -> CanarySpec | None:
    """The canary settings, or None when the Ingress is not a canary (`canary` absent or false)."""
    if not r.has("canary"):
        return None
    if not r.boolean("canary"):
        return None
    header = r.value("canary-by-header", parse_token) or ""
    value = r.get("canary-by-header-value", _regex("always|{}"))
    if value is not None:
        if header:
            return CanarySpec(header=header, header_value=value.value)
        r.add(value.key, value.raw, "has no effect without canary-by-header")
    pattern = r.get("canary-by-header-pattern", _regex(".*{}.*"))
    if pattern is not None:
        if header:
            return CanarySpec(header=header, header_pattern=pattern.value)
        r.add(pattern.key, pattern.raw, "has no effect without canary-by-header")
    cookie = r.value("canary-by-cookie", parse_token)
    if cookie:
        # canary-by-header, when set, still wins over the cookie (Higress ApplyByHeader).
        return CanarySpec(header=header, cookie=cookie)
    if header:
        return CanarySpec(header=header)
    weight = r.integer("canary-weight", minimum=0) or 0
    total = r.integer("canary-weight-total", minimum=1) or DEFAULT_WEIGHT_TOTAL
    return CanarySpec(weight=weight, weight_total=total)
