"""Reading Ingress annotations the way Higress does.

Higress reads `nginx.ingress.kubernetes.io/<key>` first and `higress.io/<key>` second ("N+H"); a few keys
exist only under `higress.io/` ("H only"). Values are trimmed line by line and an empty value counts as
invalid. Unlike Higress, which drops a bad value silently, every value that cannot be used becomes a
problem naming the full annotation key, the value and the reason; the annotation is then ignored (or the
`higress.io/` value is used when it is valid) and everything else still applies.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

import msgspec

NGINX_PREFIX = "nginx.ingress.kubernetes.io/"
HIGRESS_PREFIX = "higress.io/"

T = TypeVar("T")

# Go strconv.ParseBool.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_INT = re.compile(r"[+-]?[0-9]+")
# An HTTP header or cookie name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# A host name as annotations write a backend (registry hostnames may carry `_`).
HOST_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# A Kubernetes object name (DNS-1123 subdomain, lenient on length).
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")


def quote(value: str) -> str:
    """A value as it appears in problem texts: double-quoted, control characters escaped."""
    return json.dumps(value, ensure_ascii=False)


def problem(key: str, value: str, reason: str) -> str:
    """`annotation <key>: "<value>" <reason>`."""
    return f"annotation {key}: {quote(value)} {reason}"


def normalize(value: str) -> str:
    """Higress normalizeString: every line trimmed (blank lines at the ends dropped too)."""
    return "\n".join(line.strip() for line in value.split("\n")).strip("\n")


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """A parsed annotation and where it came from (for problems found later, at translation)."""

    key: str
    raw: str
    value: T


class AnnotationRef(msgspec.Struct, frozen=True, kw_only=True):
    """Which annotation a setting came from, kept so later checks can name it."""

    key: str
    raw: str

    def problem(self, reason: str) -> str:
        return problem(self.key, self.raw, reason)


class ServiceRef(msgspec.Struct, frozen=True, kw_only=True):
    """`[namespace/]name[:port]` as annotations write a Service; port 0 means its first port."""

    namespace: str
    name: str
    port: int = 0
    ref: AnnotationRef


class SecretRef(msgspec.Struct, frozen=True, kw_only=True):
    """`[namespace/]name` of a Secret."""

    namespace: str
    name: str
    ref: AnnotationRef


# -- value parsers: return the value or raise ValueError with the reason -----------------------


def parse_bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("is not a boolean (true or false)")


def parse_int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise ValueError("is not an integer")
    return int(text)


def int_range(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = parse_int(text)
        if minimum is not None and maximum is not None and not minimum <= value <= maximum:
            raise ValueError(f"is out of range {minimum}-{maximum}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


def parse_on_off(text: str) -> bool:
    if text == "on":
        return True
    if text == "off":
        return False
    raise ValueError('is neither "on" nor "off"')


def parse_token(text: str) -> str:
    if not _TOKEN.fullmatch(text):
        raise ValueError("is not a valid header or cookie name")
    return text


def parse_port(text: str) -> int:
    port = parse_int(text)
    if not 0 < port < 65536:
        raise ValueError("is not a port number (1-65535)")
    return port


def or_default(value: T | None, default: T) -> T:
    """`value`, or `default` when it is None (falsy values such as 0 and False are kept)."""
    return default if value is None else value


def split_list(text: str, separator: str = ",") -> list[str]:
    """Higress splitBySeparator: split, trim, drop empty items."""
    return [item.strip() for item in text.split(separator) if item.strip()]


def _k8s_name(name: str, what: str) -> str:
    if not _K8S_NAME.fullmatch(name):
        raise ValueError(f"does not name a {what} ({name!r} is not a valid Kubernetes name)")
    return name


def namespaced(text: str, namespace: str, what: str) -> tuple[str, str]:
    """`[namespace/]name` → (namespace, name); the namespace defaults to the Ingress's."""
    if text.count("/") > 1:
        raise ValueError(f"is not [namespace/]name of a {what}")
    ns, _, name = text.rpartition("/")
    if "/" in text and not ns:
        raise ValueError(f"is not [namespace/]name of a {what}")
    return (_k8s_name(ns, "namespace") if ns else namespace), _k8s_name(name, what)


def namespaced_parser(namespace: str, what: str) -> Callable[[str], tuple[str, str]]:
    """A parser of `[namespace/]name` of a `what` → (namespace, name)."""
    return lambda text: namespaced(text, namespace, what)


def service_parser(namespace: str) -> Callable[[str], tuple[str, str, int]]:
    """A parser of `[namespace/]name[:port]` → (namespace, name, port or 0)."""

    def parse(text: str) -> tuple[str, str, int]:
        name, port = text, 0
        if ":" in text:
            name, _, port_text = text.rpartition(":")
            port = parse_port(port_text)
        ns, svc = namespaced(name, namespace, "Service")
        return ns, svc, port

    return parse


class AnnotationReader:
    """Typed access to one Ingress's annotations; problems accumulate in `problems`, in reading order."""

    def __init__(self, annotations: Mapping[str, str]) -> None:
        self._annotations = annotations
        self.problems: list[str] = []
        # Names under either prefix, so that a lookup is one dict access.
        self._nginx: set[str] = set()
        self._higress: set[str] = set()
        for key in annotations:
            if key.startswith(NGINX_PREFIX):
                self._nginx.add(key[len(NGINX_PREFIX) :])
            elif key.startswith(HIGRESS_PREFIX):
                self._higress.add(key[len(HIGRESS_PREFIX) :])

    @property
    def empty(self) -> bool:
        """No annotation under either prefix."""
        return not self._nginx and not self._higress

    @property
    def annotations(self) -> Mapping[str, str]:
        return self._annotations

    def keys(self, name: str, *, higress_only: bool = False) -> list[str]:
        """The full keys present for `name`, in precedence order (nginx first)."""
        keys = []
        if not higress_only and name in self._nginx:
            keys.append(NGINX_PREFIX + name)
        if name in self._higress:
            keys.append(HIGRESS_PREFIX + name)
        return keys

    def has(self, name: str, *, higress_only: bool = False) -> bool:
        return name in self._higress or (not higress_only and name in self._nginx)

    def add(self, key: str, raw: str, reason: str) -> None:
        self.problems.append(problem(key, raw, reason))

    def get(self, name: str, parse: Callable[[str], T], *, higress_only: bool = False) -> Found[T] | None:
        """The first present value that parses; each one that does not is a problem."""
        for key in self.keys(name, higress_only=higress_only):
            raw = self._annotations[key]
            text = normalize(raw)
            if not text:
                self.add(key, raw, "is empty")
                continue
            try:
                return Found(key=key, raw=raw, value=parse(text))
            except ValueError as exc:
                self.add(key, raw, str(exc))
        return None

    def value(self, name: str, parse: Callable[[str], T], *, higress_only: bool = False) -> T | None:
        found = self.get(name, parse, higress_only=higress_only)
        return None if found is None else found.value

    def string(self, name: str, *, higress_only: bool = False) -> str | None:
        return self.value(name, str, higress_only=higress_only)

    def boolean(self, name: str, *, higress_only: bool = False) -> bool | None:
        return self.value(name, parse_bool, higress_only=higress_only)

    def integer(
        self,
        name: str,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        higress_only: bool = False,
    ) -> int | None:
        return self.value(name, int_range(minimum, maximum), higress_only=higress_only)

    def ref(self, found: Found[T]) -> AnnotationRef:
        return AnnotationRef(key=found.key, raw=found.raw)
