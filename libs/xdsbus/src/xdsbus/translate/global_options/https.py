"""The `higress-https` ConfigMap's `data.cert` YAML: fallback certificates by domain. Names from Higress's
`pkg/cert/config.go` (Config, CredentialEntry, Validate); how Ingress TLS uses them from
`pkg/ingress/kube/ingressv1/controller.go` (MatchSecretNameByDomain)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
import yaml

from xdsbus.translate.global_options.values import Section

DATA_KEY = "cert"
SYSTEM_NAMESPACE = "higress-system"


class Credential(msgspec.Struct, frozen=True, kw_only=True):
    """Domains (wildcards allowed) whose TLS falls back to the Secret `namespace/name`."""

    domains: tuple[str, ...]
    secret_namespace: str
    secret_name: str

    def matches(self, host: str) -> bool:
        """Whether `host` is within one of the domains, as Istio's host.Name.SubsetOf says: `*.a.com`
        covers `b.a.com` and `*.b.a.com`, `*` covers everything, an exact domain only itself."""
        host = host.lower()
        for domain in (d.lower() for d in self.domains):
            if domain.startswith("*"):
                if (host[1:] if host.startswith("*") else host).endswith(domain[1:]):
                    return True
            elif host == domain:
                return True
        return False


class HttpsConfig(msgspec.Struct, frozen=True, kw_only=True):
    """What xdsbus applies of higress-https, and what it reports."""

    fallback_for_invalid_secret: bool = False
    credentials: tuple[Credential, ...] = ()
    problems: tuple[str, ...] = ()
    error: str = ""

    def secret_for(self, host: str) -> tuple[str, str] | None:
        """The first credential's Secret covering `host`, as (namespace, name)."""
        for credential in self.credentials:
            if credential.matches(host):
                return credential.secret_namespace, credential.secret_name
        return None


class _Body(msgspec.Struct):
    data: dict[str, str] = {}


def parse_https_config_map(body: Any) -> HttpsConfig:
    """The fallback certificates a higress-https ConfigMap body sets, and what is not supported."""
    try:
        data = msgspec.convert(body, _Body).data
    except msgspec.ValidationError as exc:
        return HttpsConfig(error=f"data: {exc}")
    problems = [f"data.{key}: not read by xdsbus; ignored" for key in sorted(data) if key != DATA_KEY]
    text = data.get(DATA_KEY)
    if text is None:
        return HttpsConfig(problems=tuple(problems))
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return HttpsConfig(
            problems=tuple(problems), error=f"data.{DATA_KEY} is not YAML: {str(exc).splitlines()[0]}"
        )
    if document is not None and not isinstance(document, Mapping):
        return HttpsConfig(problems=tuple(problems), error=f"data.{DATA_KEY} is not a mapping")
    top = Section.of(f"data.{DATA_KEY}", document, problems)
    if top.boolean("automaticHttps", False):
        problems.append(
            f"{top.key('automaticHttps')}: automatic HTTPS (ACME certificates from Let's Encrypt) is not"
            " supported by xdsbus; no certificate is requested"
        )
    if top.raw("acmeIssuer"):
        problems.append(f"{top.key('acmeIssuer')}: ACME issuers are not supported by xdsbus; ignored")
    top.raw("renewBeforeDays")
    top.raw("version")
    fallback = top.boolean("fallbackForInvalidSecret", False)
    credentials = _credentials(top)
    top.report_unknown()
    return HttpsConfig(
        fallback_for_invalid_secret=fallback, credentials=credentials, problems=tuple(problems)
    )


def _credentials(top: Section) -> tuple[Credential, ...]:
    entries = top.raw("credentialConfig")
    if entries is None:
        return ()
    if not isinstance(entries, list):
        top.problems.append(
            f"{top.key('credentialConfig')}: expected a list; no fallback certificate applies"
        )
        return ()
    out: list[Credential] = []
    for i, entry in enumerate(entries):
        item = Section.of(f"{top.key('credentialConfig')}[{i}]", entry, top.problems)
        domains = item.strings("domains", ())
        secret = item.text("tlsSecret").strip()
        issuer = item.text("tlsIssuer").strip()
        if item.text("cacertSecret").strip():
            item.problems.append(
                f"{item.key('cacertSecret')}: client certificate CAs are not supported here; ignored"
            )
        item.report_unknown()
        if issuer:
            item.problems.append(
                f"{item.key('tlsIssuer')}: {issuer!r}: certificates issued through ACME are not supported by"
                " xdsbus; this entry is not used"
            )
            continue
        parts = secret.split("/")
        if not domains or not secret or len(parts) > 2 or not all(parts):
            item.problems.append(
                f"{item.path}: needs domains and a tlsSecret `name` or `namespace/name`; not used"
            )
            continue
        namespace, name = (parts[0], parts[1]) if len(parts) == 2 else (SYSTEM_NAMESPACE, parts[0])
        out.append(Credential(domains=domains, secret_namespace=namespace, secret_name=name))
    return tuple(out)
