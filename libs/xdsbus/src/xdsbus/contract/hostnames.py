"""Registry hostnames as Higress names them (docs/higress.md §2.2): the names routes use to reach a
registry's services, shared by the registry watchers and the translator."""

from __future__ import annotations


def higress_hostname(*labels: str) -> str:
    """A Higress registry hostname from its labels, `_` made DNS-safe as `-`:
    `higress_hostname(svc, dc, "consul")`, `higress_hostname(APP, "eureka")`. Nacos keeps its service
    label as it is: `f"{svc}.{higress_hostname(group, ns, 'nacos')}"`."""
    return ".".join(label.replace("_", "-") for label in labels)
