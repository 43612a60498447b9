"""How a service reaches NATS (docs/design.md §9, §10): servers, credential files, TLS, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsbus.nats_options import NatsOptions, NatsOptionsError, redact_url, split_servers
from xdsbus.service_flags import ServiceParser, add_common_flags


def test_a_comma_separated_list_becomes_the_servers() -> None:
    assert split_servers("nats://a:4222, nats://b:4222,,") == ("nats://a:4222", "nats://b:4222")
    options = NatsOptions.from_env(None, environ={"XDSBUS_NATS_URL": "nats://a:4222,nats://b:4222"})
    assert options.connect_kwargs() == {"servers": ["nats://a:4222", "nats://b:4222"]}
    with pytest.raises(NatsOptionsError):
        split_servers(" , ")


def test_passwords_and_tokens_are_redacted() -> None:
    assert redact_url("nats://edge:s3cret@nats:4222") == "nats://edge:***@nats:4222"
    assert redact_url("nats://t0ken@nats:4222") == "nats://***@nats:4222"
    assert redact_url("nats://nats:4222") == "nats://nats:4222"
    assert redact_url("nats://a:x@h1:4222,tls://b:y@h2:4222") == "nats://a:***@h1:4222,tls://b:***@h2:4222"
    options = NatsOptions(servers=("nats://edge:s3cret@nats:4222",))
    assert "s3cret" not in options.describe()


def test_user_and_password_file(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("pw1\n")
    env = {"XDSBUS_NATS_USER": "edge", "XDSBUS_NATS_PASSWORD_FILE": str(password)}
    kwargs = NatsOptions.from_env("nats://n:4222", environ=env).connect_kwargs()
    assert (kwargs["user"], kwargs["password"]) == ("edge", "pw1")
    # One file with both: `user:password`.
    password.write_text("builder:pw:2")
    kwargs = NatsOptions.from_env(
        "nats://n:4222", environ={"XDSBUS_NATS_PASSWORD_FILE": str(password)}
    ).connect_kwargs()
    assert (kwargs["user"], kwargs["password"]) == ("builder", "pw:2")
    password.write_text("no-colon")
    with pytest.raises(NatsOptionsError, match="user:password"):
        NatsOptions.from_env(
            "nats://n:4222", environ={"XDSBUS_NATS_PASSWORD_FILE": str(password)}
        ).connect_kwargs()


def test_nkey_and_creds_files_and_their_conflicts(tmp_path: Path) -> None:
    seed, creds = tmp_path / "seed.nk", tmp_path / "user.creds"
    seed.write_text("SUAxxx")
    creds.write_text("-----BEGIN NATS USER JWT-----")
    assert NatsOptions(nkey_file=seed).connect_kwargs()["nkeys_seed"] == str(seed)
    assert NatsOptions(creds_file=creds).connect_kwargs()["user_credentials"] == str(creds)
    with pytest.raises(NatsOptionsError, match="only one"):
        NatsOptions(nkey_file=seed, creds_file=creds).connect_kwargs()
    with pytest.raises(NatsOptionsError, match="cannot read"):
        NatsOptions(nkey_file=tmp_path / "missing").connect_kwargs()
    with pytest.raises(NatsOptionsError, match="needs"):
        NatsOptions(user="edge").connect_kwargs()


def test_tls_needs_readable_files(tmp_path: Path) -> None:
    with pytest.raises(NatsOptionsError, match="go together"):
        NatsOptions(cert_file=tmp_path / "c.pem").connect_kwargs()
    with pytest.raises(NatsOptionsError, match="TLS"):
        NatsOptions(ca_file=tmp_path / "missing.pem").connect_kwargs()


def test_service_flags_check_the_credential_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = ServiceParser(prog="svc")
    add_common_flags(parser)
    assert (
        parser.parse(["--nats-url", "nats://a:4222,nats://b:4222"]).nats_url == "nats://a:4222,nats://b:4222"
    )
    monkeypatch.setenv("XDSBUS_NATS_CREDS_FILE", str(tmp_path / "missing.creds"))
    with pytest.raises(SystemExit) as exit_:
        parser.parse([])
    assert exit_.value.code == 2
    assert "XDSBUS_NATS_CREDS_FILE: no readable file" in capsys.readouterr().err


def test_replies_go_to_the_users_own_inboxes(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("edge:pw")
    assert NatsOptions(password_file=password).connect_kwargs()["inbox_prefix"] == "_INBOX_edge"
    assert (
        NatsOptions(servers=("nats://reader:pw@n:4222",)).connect_kwargs()["inbox_prefix"] == "_INBOX_reader"
    )
    # A token is no user name: it must not end up in a subject.
    assert "inbox_prefix" not in NatsOptions(servers=("nats://s3cret@n:4222",)).connect_kwargs()
    assert "inbox_prefix" not in NatsOptions().connect_kwargs()
    env = {"XDSBUS_NATS_INBOX_PREFIX": "_INBOX_edge"}
    assert (
        NatsOptions.from_env("nats://n:4222", environ=env).connect_kwargs()["inbox_prefix"] == "_INBOX_edge"
    )
