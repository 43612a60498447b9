"""The `higress-config` ConfigMap's `data.higress` YAML into GlobalOptions (docs/global-options.md).

Higress reads the whole document with Go's JSON decoder and validates each section, ignoring a section
that fails (pkg/ingress/kube/configmap/). Here every key is read on its own: a missing key takes Higress's
default, a bad one is reported and takes the default, and the rest applies."""

from __future__ import annotations

from typing import Any

import msgspec
import yaml

from xdsbus.translate.global_options.downstream import parse_downstream
from xdsbus.translate.global_options.gzip import parse_gzip
from xdsbus.translate.global_options.headers import parse_headers
from xdsbus.translate.global_options.model import GlobalOptions
from xdsbus.translate.global_options.tracing import parse_tracing
from xdsbus.translate.global_options.upstream import parse_upstream
from xdsbus.translate.global_options.values import Section

DATA_KEY = "higress"

# Keys Higress reads that xdsbus does not act on, and why.
_NOT_APPLIED = {
    "mcpServer": "Higress's MCP server (an AI feature of its own Envoy build) is not supported; ignored",
}
# Other keys of the ConfigMap's data.
_OTHER_DATA = {
    "mesh": "Istio mesh configuration; xdsbus has no mesh settings, ignored",
    "meshNetworks": "Istio mesh networks; ignored",
}


class ConfigMapBody(msgspec.Struct, kw_only=True):
    """The part of a ConfigMap body the global options read."""

    data: dict[str, str] = {}


class HigressConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The options, what was wrong with some keys (`problems`), and what made the whole document
    unusable (`error`, the defaults then apply)."""

    options: GlobalOptions
    problems: tuple[str, ...] = ()
    error: str = ""


def parse_config_map(body: Any) -> HigressConfig:
    """The options a higress-config ConfigMap body (as an event carries it) sets."""
    try:
        config_map = msgspec.convert(body, ConfigMapBody)
    except msgspec.ValidationError as exc:
        return HigressConfig(options=GlobalOptions(), error=f"data: {exc}; the defaults apply")
    problems = [
        f"data.{key}: {_OTHER_DATA.get(key, 'not read by xdsbus; ignored')}"
        for key in sorted(config_map.data)
        if key != DATA_KEY
    ]
    text = config_map.data.get(DATA_KEY)
    if text is None:
        return HigressConfig(options=GlobalOptions(), problems=tuple(problems))
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return HigressConfig(
            options=GlobalOptions(),
            problems=tuple(problems),
            error=f"data.{DATA_KEY} is not YAML ({_first_line(exc)}); the defaults apply",
        )
    if document is not None and not isinstance(document, dict):
        return HigressConfig(
            options=GlobalOptions(),
            problems=tuple(problems),
            error=f"data.{DATA_KEY} is not a mapping of options; the defaults apply",
        )
    options = parse_options(Section.of("", document, problems))
    return HigressConfig(options=options, problems=tuple(problems))


def parse_options(top: Section) -> GlobalOptions:
    """GlobalOptions from the document's top level; problems are added to `top.problems`."""
    add_x_real_ip, disable_x_envoy = parse_headers(top)
    options = GlobalOptions(
        gzip=parse_gzip(top.child("gzip")),
        tracing=parse_tracing(top.child("tracing")),
        downstream=parse_downstream(top.child("downstream")),
        upstream=parse_upstream(top.child("upstream")),
        add_x_real_ip_header=add_x_real_ip,
        disable_x_envoy_headers=disable_x_envoy,
    )
    top.report_unknown(_NOT_APPLIED)
    return options


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
