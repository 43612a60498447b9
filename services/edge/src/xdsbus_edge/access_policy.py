"""Who may ask for what: the edge's access policy file (docs/design.md §10).

A proxy's identity is a URI or DNS SAN of its client certificate (a SPIFFE id, say) or a bearer token it
sends as gRPC metadata `authorization: Bearer <token>`. The policy maps identities to the scopes and
Gateways they may request:

    allow:
      - identity: spiffe://xdsbus.local/gateway     # a SAN; a trailing `*` matches a prefix
        scopes: [default]                            # `*`: any scope; `gateway.ns.*`: a prefix
        gateways: ["*"]                              # `namespace/name`, `namespace/*` or `*`; default none
      - token_file: tokens/team-a                    # the token (relative to this file), never logged
        name: team-a                                 # how logs and /debug name it (default: file name)
        scopes: [team-a]

JSON with the same shape is accepted (it is YAML). A bad file is refused at start with the file, the line
and the key at fault.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ANY = "*"


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class Grant:
    """What one identity may ask for."""

    scopes: frozenset[str]
    gateways: frozenset[str] = frozenset()

    def allows_scope(self, scope: str) -> bool:
        """`scope` is a name; patterns are exact, a prefix ending in `*` (`gateway.team-a.*`: the derived
        scopes of namespace team-a's Gateways) or `*`."""
        return scope in self.scopes or any(
            pattern.endswith(ANY) and scope.startswith(pattern[:-1]) for pattern in self.scopes
        )

    def allows_gateway(self, gateway: str) -> bool:
        """`gateway` is `namespace/name`; patterns are exact, `namespace/*` or `*`."""
        if ANY in self.gateways or gateway in self.gateways:
            return True
        namespace = gateway.split("/", 1)[0]
        return f"{namespace}/*" in self.gateways


@dataclass(frozen=True)
class Rule:
    """One `allow` entry: an identity pattern (SAN) or a token, and its grant."""

    label: str
    grant: Grant
    identity: str = ""
    token_sha256: bytes = b""

    def matches_san(self, san: str) -> bool:
        if not self.identity:
            return False
        if self.identity.endswith(ANY):
            return san.startswith(self.identity[:-1])
        return san == self.identity


@dataclass(frozen=True)
class AccessPolicy:
    """The parsed policy: rules for certificate identities and for bearer tokens."""

    source: str
    rules: tuple[Rule, ...] = field(default=())

    def for_sans(self, sans: Iterable[str]) -> list[tuple[str, Rule]]:
        """(SAN, rule) for every SAN that a rule names, in policy order."""
        return [(san, rule) for rule in self.rules for san in sans if rule.matches_san(san)]

    def for_token(self, token: str) -> Rule | None:
        digest = hashlib.sha256(token.encode()).digest()
        found = None
        for rule in self.rules:
            # Compare every token rule, so timing does not tell which one matched.
            if rule.token_sha256 and hmac.compare_digest(rule.token_sha256, digest):
                found = found or rule
        return found


def _where(path: Path, node: yaml.Node, key: str) -> str:
    return f"{path}:{node.start_mark.line + 1}: {key}"


def _strings(path: Path, node: yaml.Node, key: str) -> frozenset[str]:
    if not isinstance(node, yaml.SequenceNode):
        raise PolicyError(f"{_where(path, node, key)}: expected a list of strings")
    values = []
    for item in node.value:
        if not isinstance(item, yaml.ScalarNode) or not str(item.value).strip():
            raise PolicyError(f"{_where(path, item, key)}: expected a non-empty string")
        values.append(str(item.value).strip())
    return frozenset(values)


def _scalar(path: Path, node: yaml.Node, key: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        raise PolicyError(f"{_where(path, node, key)}: expected a non-empty string")
    return str(node.value).strip()


_RULE_KEYS = {"identity", "token_file", "name", "scopes", "gateways"}


def _rule(path: Path, node: yaml.Node, key: str) -> Rule:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"{_where(path, node, key)}: expected a mapping")
    entries: dict[str, yaml.Node] = {}
    for key_node, value in node.value:
        name = str(key_node.value)
        if name not in _RULE_KEYS:
            raise PolicyError(
                f"{_where(path, key_node, f'{key}.{name}')}: unknown key (expected one of "
                f"{', '.join(sorted(_RULE_KEYS))})"
            )
        entries[name] = value
    if ("identity" in entries) == ("token_file" in entries):
        raise PolicyError(f"{_where(path, node, key)}: give exactly one of identity or token_file")
    if "scopes" not in entries:
        raise PolicyError(f"{_where(path, node, key)}: scopes is required")
    grant = Grant(
        scopes=_strings(path, entries["scopes"], f"{key}.scopes"),
        gateways=_strings(path, entries["gateways"], f"{key}.gateways")
        if "gateways" in entries
        else frozenset(),
    )
    if "identity" in entries:
        identity = _scalar(path, entries["identity"], f"{key}.identity")
        label = _scalar(path, entries["name"], f"{key}.name") if "name" in entries else identity
        return Rule(label=label, grant=grant, identity=identity)
    token_path = Path(_scalar(path, entries["token_file"], f"{key}.token_file"))
    if not token_path.is_absolute():
        token_path = path.parent / token_path
    try:
        token = token_path.read_text().strip()
    except OSError as exc:
        raise PolicyError(
            f"{_where(path, entries['token_file'], f'{key}.token_file')}: cannot read {token_path}: "
            f"{exc.strerror}"
        ) from exc
    if not token:
        raise PolicyError(
            f"{_where(path, entries['token_file'], f'{key}.token_file')}: {token_path} is empty"
        )
    label = _scalar(path, entries["name"], f"{key}.name") if "name" in entries else f"token:{token_path.name}"
    return Rule(label=label, grant=grant, token_sha256=hashlib.sha256(token.encode()).digest())


def load_policy(path: Path) -> AccessPolicy:
    """Parse a policy file; raises PolicyError naming the file, line and key of the first problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the access policy: {exc.strerror}") from exc
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise PolicyError(f"{path}{line}: not valid YAML or JSON: {getattr(exc, 'problem', exc)}") from exc
    if root is None:
        raise PolicyError(f"{path}: empty access policy (expected a mapping with `allow`)")
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(f"{path}:{root.start_mark.line + 1}: expected a mapping with `allow`")
    allow: yaml.Node | None = None
    for key_node, value in root.value:
        if key_node.value != "allow":
            raise PolicyError(f"{_where(path, key_node, str(key_node.value))}: unknown key (expected allow)")
        allow = value
    if allow is None:
        raise PolicyError(f"{path}: `allow` is missing")
    if not isinstance(allow, yaml.SequenceNode):
        raise PolicyError(f"{_where(path, allow, 'allow')}: expected a list of rules")
    rules = tuple(_rule(path, item, f"allow[{i}]") for i, item in enumerate(allow.value))
    return AccessPolicy(source=str(path), rules=rules)
