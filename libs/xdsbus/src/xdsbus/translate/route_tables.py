"""The Ingress HTTP port's route table split into route configurations by a key computed from the host, so
that a change to one host makes Envoy rebuild a table of a few dozen virtual hosts rather than one of every
host (docs/route-table-split.md).

Envoy chooses the table per request through Scoped RDS, keyed on the request header `x-xdsbus-route-table`.
The connection manager's early header mutation writes that header from the `:authority` before anything
reads the route (so the filter chain, whose per-route enabled filters are decided when it is built, sees
the route of the right table): a number of KEY_BITS bits, each whether a character of the host falls in a
class (a CEL expression of RE2 matches; the stock Envoy build has no other way to hash a header).
`host_key` computes the same number in Python. There are 2**KEY_BITS scopes; the scope of key k reads
table k mod the number of tables.

Every table holds the exact hosts of its keys plus every wildcard host and the `*` host, so Envoy's own
virtual host matching inside the chosen table gives what one table gave: exact before the longest wildcard
suffix before `*`, case- and port-insensitive. Envoy's scope lookup alone could not: it matches key
fragments exactly, so a wildcard host or `*` would have no scope.
"""

from __future__ import annotations

import re

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2
from envoy.config.route.v3 import scoped_route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import header_mutation_pb2

from xdsbus.translate.envoy_common import ads_source, pack

# The request header naming the table; written by the early header mutation, never forwarded upstream.
TABLE_HEADER = "x-xdsbus-route-table"

# Characters the key reads, numbered; a character's bit b is bit b of its number. Others set no bit.
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# (where in the host, which bits of the character there): the last and second-last characters of the
# first label, then the last character of the second label; the first label alone would put every
# `www.<name>` together.
_LAST_OF_FIRST = "first-last"
_BEFORE_LAST_OF_FIRST = "first-before-last"
_LAST_OF_SECOND = "second-last"
_POSITIONS = ((_LAST_OF_FIRST, 4), (_BEFORE_LAST_OF_FIRST, 4), (_LAST_OF_SECOND, 2))
KEY_BITS = sum(bits for _, bits in _POSITIONS)
KEYS = 1 << KEY_BITS

# RE2 patterns of "the character at this position is in CLASS"; a label ends at `.`, at the `:` of a port,
# or at the end. [.] rather than an escaped dot: the pattern sits in a CEL string literal.
_PATTERNS = {
    _LAST_OF_FIRST: "(?i)^[^.:]*[{cls}](?:[.:]|$)",
    _BEFORE_LAST_OF_FIRST: "(?i)^[^.:]*[{cls}][^.:](?:[.:]|$)",
    _LAST_OF_SECOND: "(?i)^[^.:]*[.][^.:]*[{cls}](?:[.:]|$)",
}


def _with_bit(bit: int) -> str:
    return "".join(c for i, c in enumerate(_ALPHABET) if (i >> bit) & 1)


def _key_expression() -> str:
    terms = []
    weight = 1
    for position, bits in _POSITIONS:
        for bit in range(bits):
            pattern = _PATTERNS[position].format(cls=_with_bit(bit))
            terms.append(f"(request.host.matches('{pattern}') ? {weight} : 0)")
            weight <<= 1
    return " + ".join(terms)


# The header's value: Envoy's substitution formatter evaluating the CEL expression for each request.
KEY_FORMAT = f"%CEL({_key_expression()})%"


_LABEL_END = re.compile("[.:]")


def _labels(host: str) -> tuple[str, str | None]:
    """The first label of `host` and, when a `.` ends it, the second (labels end at `.`, `:` or the end)."""
    end = _LABEL_END.search(host)
    if end is None:
        return host, None
    first = host[: end.start()]
    if end.group() != ".":
        return first, None
    second_end = _LABEL_END.search(host, end.end())
    return first, host[end.end() : second_end.start() if second_end else len(host)]


# Per position: (its shift in the key, each alphabet character's bits there); a character outside the
# alphabet matches no class, so it adds nothing.
_POSITION_BITS = {
    position: (shift, {c: i & ((1 << bits) - 1) for i, c in enumerate(_ALPHABET)})
    for (position, bits), shift in zip(
        _POSITIONS, (sum(b for _, b in _POSITIONS[:n]) for n in range(len(_POSITIONS))), strict=True
    )
}


def host_key(host: str) -> int:
    """The key Envoy computes (KEY_FORMAT) for a request to `host`: case-insensitive, port ignored."""
    first, second = _labels(host.lower())
    chars = {
        _LAST_OF_FIRST: first[-1:],
        _BEFORE_LAST_OF_FIRST: first[-2:-1],
        _LAST_OF_SECOND: second[-1:] if second else "",
    }
    key = 0
    for position, char in chars.items():
        shift, bits_of = _POSITION_BITS[position]
        key |= bits_of.get(char, 0) << shift
    return key


def table_of(host: str, tables: int) -> int:
    """The table of an exact host."""
    return host_key(host) % tables


def table_name(port: int, table: int) -> str:
    """`http.<port>.<nnn>`: the route configuration of one table of `http.<port>`."""
    return f"http.{port}.{table:03d}"


def scope_name(port: int, key: int) -> str:
    """`http.<port>/<key>`: the scope of one key."""
    return f"http.{port}/{key:04d}"


def is_everywhere(host: str) -> bool:
    """Whether a host goes in every table: `*` and wildcard hosts match request hosts of any key."""
    return host.startswith("*")


def early_key_mutation() -> extension_pb2.TypedExtensionConfig:
    """The connection manager's early header mutation writing TABLE_HEADER (over any the client sent)."""
    mutation = header_mutation_pb2.HeaderMutation(
        mutations=[
            mutation_rules_pb2.HeaderMutation(
                append=base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=TABLE_HEADER, value=KEY_FORMAT),
                    append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
                )
            )
        ]
    )
    return extension_pb2.TypedExtensionConfig(name="xdsbus.route-table-key", typed_config=pack(mutation))


def scoped_routes(port: int) -> hcm.ScopedRoutes:
    """The connection manager's Scoped RDS: scopes and their tables over ADS, keyed on TABLE_HEADER."""
    out = hcm.ScopedRoutes(name=f"http.{port}")
    extractor = out.scope_key_builder.fragments.add().header_value_extractor
    extractor.name = TABLE_HEADER
    # The whole value (no element separator): the oneof must still be set.
    extractor.index = 0
    out.rds_config_source.CopyFrom(ads_source())
    out.scoped_rds.scoped_rds_config_source.CopyFrom(ads_source())
    return out


def scope(port: int, key: int, tables: int) -> scoped_route_pb2.ScopedRouteConfiguration:
    """The scope of one key, reading the table of that key."""
    out = scoped_route_pb2.ScopedRouteConfiguration(
        name=scope_name(port, key), route_configuration_name=table_name(port, key % tables)
    )
    out.key.fragments.add(string_key=str(key))
    return out


def error_page_headers(tables: int) -> tuple[tuple[str, str], ...]:
    """What an error page's re-issued request must carry to be routed in a split table: the header
    forwarding removed, computed again (custom_response looks the route up before the new stream's early
    mutation runs)."""
    return ((TABLE_HEADER, KEY_FORMAT),) if tables else ()
