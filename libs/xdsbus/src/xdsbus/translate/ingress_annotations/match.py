"""Extra match conditions (Higress match.go and ignore_case.go).

* `higress.io/match-method` (Higress reads it N+H): space-separated methods.
* `higress.io/{exact,prefix,regex}-match-header-<name>`, `...-match-pseudo-header-<name>` (header
  `:<name>`) and `...-match-query-<name>` (H only; the suffix is the header or parameter name).
* `ignore-path-case` (N+H): case-insensitive path matching.

Annotations are read in key order, so the conditions come out in a stable order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import msgspec

from xdsbus.model.routes import HeaderMatch, QueryMatch, StringMatchKind
from xdsbus.translate.ingress_annotations.re2 import re2_problem
from xdsbus.translate.ingress_annotations.reader import HIGRESS_PREFIX, AnnotationReader, parse_token

METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
_KEY = re.compile(
    re.escape(HIGRESS_PREFIX) + r"(exact|prefix|regex)-match-(header|pseudo-header|query)-(.*)", re.DOTALL
)
_KINDS = {"exact": StringMatchKind.EXACT, "prefix": StringMatchKind.PREFIX, "regex": StringMatchKind.REGEX}


class MatchSpec(msgspec.Struct, frozen=True, kw_only=True):
    methods: tuple[str, ...] = ()
    headers: tuple[HeaderMatch, ...] = ()
    query: tuple[QueryMatch, ...] = ()
    ignore_case: bool = False


def _methods(text: str) -> tuple[str, ...]:
    methods: list[str] = []
    bad: list[str] = []
    for item in text.split():
        method = item.upper()
        if method not in METHODS:
            bad.append(item)
        elif method not in methods:
            methods.append(method)
    if bad:
        raise ValueError(f"has unknown method(s) {', '.join(bad)} (known: {' '.join(METHODS)})")
    return tuple(methods)


def _value(kind: StringMatchKind, raw: str) -> str:
    value = raw.strip()
    if kind is StringMatchKind.PREFIX and not value:
        raise ValueError("is empty (a prefix match needs a prefix)")
    if kind is StringMatchKind.REGEX:
        reason = re2_problem(value)
        if reason:
            raise ValueError(reason)
    return value


def _conditions(
    r: AnnotationReader, annotations: Mapping[str, str]
) -> tuple[tuple[HeaderMatch, ...], tuple[QueryMatch, ...]]:
    headers: list[HeaderMatch] = []
    query: list[QueryMatch] = []
    for key in sorted(annotations):
        m = _KEY.fullmatch(key)
        if m is None:
            continue
        kind, target, name = _KINDS[m.group(1)], m.group(2), m.group(3)
        raw = annotations[key]
        try:
            if target == "query":
                if not name:
                    raise ValueError("does not name a query parameter (the key ends after match-query-)")
                query.append(QueryMatch(name=name, kind=kind, value=_value(kind, raw)))
                continue
            try:
                name = parse_token(name).lower()
            except ValueError:
                raise ValueError(
                    f"does not name a header ({name!r} in the key is not a header name)"
                ) from None
            if target == "pseudo-header":
                name = ":" + name
            headers.append(HeaderMatch(name=name, kind=kind, value=_value(kind, raw)))
        except ValueError as exc:
            r.add(key, raw, str(exc))
    return tuple(sorted(headers)), tuple(sorted(query))


def parse_match(r: AnnotationReader) -> MatchSpec:
    methods = r.value("match-method", _methods) or ()
    headers, query = _conditions(r, r.annotations)
    return MatchSpec(
        methods=methods,
        headers=headers,
        query=query,
        ignore_case=bool(r.boolean("ignore-path-case")),
    )
