"""Which scope a proxy belongs to (docs/design.md §5): XDSBUS_GATEWAY `<namespace>/<name>` selects that
Gateway's derived scope, which the access policy grants like any scope."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from xdsbus_edge.access_policy import Grant
from xdsbus_edge.scopes import SCOPE_PATTERN, scope_of


def node(**metadata: str) -> base_pb2.Node:
    out = base_pb2.Node(id="envoy-1")
    for key, value in metadata.items():
        out.metadata.fields[key].string_value = value
    return out


@pytest.mark.parametrize(
    ("metadata", "scope", "valid"),
    [
        ({}, "default", True),
        ({"XDSBUS_SCOPE": "team-a"}, "team-a", True),
        ({"XDSBUS_GATEWAY": "infra/web"}, "gateway.infra.web", True),
        # The bootstraps of the shared mode name the default scope: the Gateway still decides.
        ({"XDSBUS_SCOPE": "default", "XDSBUS_GATEWAY": "infra/web.v2"}, "gateway.infra.web.v2", True),
        (
            {"XDSBUS_SCOPE": "team-a", "XDSBUS_GATEWAY": "infra/web"},
            "XDSBUS_GATEWAY=infra/web with XDSBUS_SCOPE=team-a",
            False,
        ),
        ({"XDSBUS_GATEWAY": "web"}, "XDSBUS_GATEWAY=web (not <namespace>/<name>)", False),
    ],
)
def test_scope_of(metadata: dict[str, str], scope: str, valid: bool) -> None:
    assert scope_of(node(**metadata)) == scope
    assert bool(SCOPE_PATTERN.match(scope)) is valid


def test_policy_grants_derived_scopes_by_name_or_prefix() -> None:
    team = Grant(scopes=frozenset({"gateway.team-a.*"}))
    assert team.allows_scope("gateway.team-a.web")
    assert not team.allows_scope("gateway.team-b.web") and not team.allows_scope("default")
    exact = Grant(scopes=frozenset({"gateway.infra.web"}))
    assert exact.allows_scope("gateway.infra.web") and not exact.allows_scope("gateway.infra.web2")
    assert Grant(scopes=frozenset({"*"})).allows_scope("gateway.infra.web")
