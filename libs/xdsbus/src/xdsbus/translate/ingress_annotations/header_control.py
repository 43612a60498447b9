"""Request and response header control (Higress header_control.go, H only).

`higress.io/{request,response}-header-control-{add,update,remove}`: add/update take one header per line,
`<name><whitespace><value>`, each of name and value stripped of one pair of surrounding single or
double quotes (`trimQuotes`; Higress's e2e test httproute-request-header-control.yaml writes
`'x-test2' "higress; test=false"`) and become HeaderMutation add/set;
remove takes a comma list of names. A repeated name keeps its last value, at its first position.
"""

from __future__ import annotations

import re

import msgspec

from xdsbus.model.routes import HeaderMutation
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, parse_token, quote, split_list

_SPACE = re.compile(r"\s+")


class HeaderControlSpec(msgspec.Struct, frozen=True, kw_only=True):
    request: HeaderMutation | None = None
    response: HeaderMutation | None = None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _lines(text: str) -> tuple[tuple[str, str], ...]:
    headers: dict[str, str] = {}
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        parts = _SPACE.split(line, maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"has line {quote(line)} that is not '<header> <value>'")
        try:
            name = parse_token(_unquote(parts[0]))
        except ValueError:
            raise ValueError(f"has line {quote(line)} whose header name is invalid") from None
        headers[name] = _unquote(parts[1].strip())
    return tuple(headers.items())


def _names(text: str) -> tuple[str, ...]:
    names: list[str] = []
    for name in split_list(text):
        try:
            parse_token(name)
        except ValueError:
            raise ValueError(f"has {quote(name)}, which is not a header name") from None
        if name not in names:
            names.append(name)
    return tuple(names)


def _mutation(r: AnnotationReader, direction: str) -> HeaderMutation | None:
    mutation = HeaderMutation(
        add=r.value(f"{direction}-header-control-add", _lines, higress_only=True) or (),
        set=r.value(f"{direction}-header-control-update", _lines, higress_only=True) or (),
        remove=r.value(f"{direction}-header-control-remove", _names, higress_only=True) or (),
    )
    return None if mutation == HeaderMutation() else mutation


def parse_header_control(r: AnnotationReader) -> HeaderControlSpec:
    return HeaderControlSpec(request=_mutation(r, "request"), response=_mutation(r, "response"))
