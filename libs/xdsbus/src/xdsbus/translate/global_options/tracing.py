"""`tracing`: one tracer (zipkin, skywalking or opentelemetry) and its sampling. Names, ranges and
defaults from Higress's `pkg/ingress/kube/configmap/tracing.go` (validTracing, NewDefaultTracing)."""

from __future__ import annotations

from xdsbus.translate.global_options.model import TracingOptions, TracingProvider
from xdsbus.translate.global_options.values import Section

PROVIDERS = ("zipkin", "skywalking", "opentelemetry")


def parse_tracing(section: Section) -> TracingOptions:
    """The `tracing` section. Enabled tracing needs exactly one provider with a service and a port;
    otherwise it is reported and tracing stays off."""
    d = TracingOptions()
    enable = section.boolean("enable", d.enable)
    sampling = section.number("sampling", d.sampling, 0.0, 100.0)
    # Milliseconds; Higress refuses 0 and below.
    timeout_ms = section.integer("timeout", d.timeout_ms, 1, 2**31 - 1)
    providers = [p for p in (_provider(section, kind) for kind in PROVIDERS) if p is not None]
    section.report_unknown()
    provider = providers[0] if len(providers) == 1 else None
    if enable and len(providers) != 1:
        configured = ", ".join(p.kind for p in providers) or "none"
        section.problems.append(
            f"{section.path}.enable: tracing needs exactly one of {', '.join(PROVIDERS)} with a service and"
            f" a port (configured: {configured}); tracing stays off"
        )
    return TracingOptions(enable=enable, sampling=sampling, timeout_ms=timeout_ms, provider=provider)


def _provider(section: Section, kind: str) -> TracingProvider | None:
    if section.raw(kind) is None:
        return None
    sub = section.child(kind)
    service = sub.text("service").strip()
    port_text = sub.text("port").strip()
    token = sub.text("access_token") if kind == "skywalking" else ""
    sub.report_unknown()
    if not service:
        sub.problems.append(f"{sub.path}.service: missing; this tracer is not used")
        return None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        sub.problems.append(f"{sub.path}.port: {port_text!r} is not a port number; this tracer is not used")
        return None
    return TracingProvider(kind=kind, service=service, port=int(port_text), access_token=token)
