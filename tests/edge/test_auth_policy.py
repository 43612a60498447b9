"""The access policy file and the edge's xDS security flags (docs/design.md §10): what is granted, and a
bad file or flag refused at start with a message naming the file, line and key (or the flag)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from xdsbus_dev.harness.certs import XdsPki
from xdsbus_edge.access_policy import PolicyError, load_policy
from xdsbus_edge.main import parse_args
from xdsbus_edge.stream_access import Caller, StreamAccess


def _write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _access(tmp_path: Path) -> StreamAccess:
    (tmp_path / "ops.token").write_text("s3cr3t\n")
    policy = load_policy(
        _write(
            tmp_path,
            "allow:\n"
            "  - identity: spiffe://td/ns/team-a/*\n"
            "    scopes: [team-a]\n"
            "    gateways: [team-a/*]\n"
            "  - identity: gw.example.com\n"
            "    name: shared-gateway\n"
            "    scopes: ['*']\n"
            "  - token_file: ops.token\n"
            "    scopes: [default]\n"
            "    gateways: ['*']\n",
        )
    )
    denied: list[str] = []
    return StreamAccess(policy, denied.append)


@pytest.mark.parametrize(
    ("caller", "scope", "gateway", "outcome"),
    [
        (Caller(sans=("spiffe://td/ns/team-a/sa/gw",)), "team-a", "", None),
        (Caller(sans=("spiffe://td/ns/team-a/sa/gw",)), "team-a", "team-a/web", None),
        (Caller(sans=("spiffe://td/ns/team-a/sa/gw",)), "team-a", "team-b/web", "gateway"),
        (Caller(sans=("spiffe://td/ns/team-a/sa/gw",)), "team-b", "", "scope"),
        (Caller(sans=("spiffe://td/ns/team-b/sa/gw",)), "team-a", "", "unknown_identity"),
        (Caller(sans=("gw.example.com",)), "anything", "", None),
        (Caller(sans=("gw.example.com",)), "anything", "ns/gw", "gateway"),
        (Caller(token="s3cr3t"), "default", "ns/gw", None),
        (Caller(token="s3cr3t"), "team-a", "", "scope"),
        (Caller(token="guess"), "default", "", "bad_token"),
        (Caller(), "default", "", "no_identity"),
    ],
)
def test_grants(tmp_path: Path, caller: Caller, scope: str, gateway: str, outcome: str | None) -> None:
    who, denial = _access(tmp_path).decide(caller, scope, gateway)
    assert (denial.reason if denial else None) == outcome
    assert "s3cr3t" not in who
    if denial is not None:
        unauthenticated = outcome in ("no_identity", "bad_token")
        expected = grpc.StatusCode.UNAUTHENTICATED if unauthenticated else grpc.StatusCode.PERMISSION_DENIED
        assert denial.code == expected


def test_no_policy_admits_whatever_the_transport_accepted() -> None:
    assert StreamAccess(None, print).decide(Caller(), "any", "ns/gw")[1] is None


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("allow:\n  - identity: a\n    scope: [x]\n", ":3: allow[0].scope: unknown key"),
        ("allow:\n  - identity: a\n", ":2: allow[0]: scopes is required"),
        ("allow:\n  - identity: a\n    scopes: x\n", ":3: allow[0].scopes: expected a list"),
        ("allow:\n  - scopes: [x]\n", ":2: allow[0]: give exactly one of identity or token_file"),
        (
            "allow:\n  - identity: a\n    scopes: [x]\n  - token_file: nope\n    scopes: [y]\n",
            ":4: allow[1].token_file: cannot read",
        ),
        (
            "allow:\n  - identity: a\n    scopes: [x, {}]\n",
            ":3: allow[0].scopes: expected a non-empty string",
        ),
        ("rules: []\n", ":1: rules: unknown key"),
        ("allow: [\n", ": not valid YAML or JSON"),
        ('{"allow": [{"identity": "a", "scopes": "x"}]}', ":1: allow[0].scopes: expected a list"),
        ("", ": empty access policy"),
    ],
)
def test_bad_policy_names_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(err.value).startswith(str(path)), err.value
    assert where in str(err.value), err.value


def test_json_policy(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"allow": [{"identity": "a", "scopes": ["x"]}]}', "policy.json")
    assert load_policy(path).rules[0].grant.scopes == {"x"}


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_plaintext_only_on_loopback_and_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("XDSBUS_XDS_TLS_CERT", "XDSBUS_XDS_TLS_KEY", "XDSBUS_XDS_PLAINTEXT", "XDSBUS_XDS_CLIENT_CA"):
        monkeypatch.delenv(var, raising=False)
    assert "--xds-tls-cert" in _exit(["--xds-listen", "127.0.0.1:1"], capsys)
    err = _exit(["--xds-listen", "0.0.0.0:1", "--xds-plaintext", "true"], capsys)
    assert "--xds-plaintext" in err and "loopback" in err
    monkeypatch.setenv("XDSBUS_XDS_PLAINTEXT", "true")
    assert "XDSBUS_XDS_PLAINTEXT" in _exit(["--xds-listen", "10.1.2.3:1"], capsys)
    args = parse_args(["--xds-listen", "127.0.0.1:1"])
    assert args.xds_tls is None and args.access_policy is None


def test_tls_flags_and_a_bad_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = XdsPki(tmp_path / "pki").create()
    assert {p.stat().st_mode & 0o777 for p in (pki.edge_key, pki.envoy_key)} == {0o600}
    args = parse_args(pki.edge_flags())
    assert args.xds_tls.mutual and args.xds_tls.cert_file == pki.edge_cert
    bad = _write(tmp_path, "allow:\n  - identity: a\n")
    err = _exit([*pki.edge_flags(), "--xds-access-policy", str(bad)], capsys)
    assert "--xds-access-policy" in err and f"{bad}:2: allow[0]: scopes is required" in err
