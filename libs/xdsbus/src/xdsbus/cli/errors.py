"""What the CLI says when a command cannot do its job: what went wrong, then a `hint:` line naming what
to do next (start NATS, set credentials, apply the layout, start a builder, list the versions).

Exit status 2 is for what the user can fix (input, setup, a server that is not there); 1 for NATS
failing in the middle of a command. Any other exception is a bug and keeps its traceback."""

from __future__ import annotations

import argparse

from nats.errors import Error as NatsError

from xdsbus.bus import LEDGER_STREAM, Bus, LayoutMissing
from xdsbus.layout import LEDGER_SUBJECT_PREFIX
from xdsbus.ledger import reader
from xdsbus.nats_options import (
    CREDS_FILE_VARIABLE,
    NKEY_FILE_VARIABLE,
    PASSWORD_FILE_VARIABLE,
    USER_VARIABLE,
    redact_url,
)

USER_ERROR = 2
FAILED = 1

UNREACHABLE_HINT = (
    "is nats-server running there? `make run` starts the local stack; "
    "name another server with --nats-url URL or XDSBUS_NATS_URL"
)
LOCAL_STACK_CREDENTIALS = f"export {PASSWORD_FILE_VARIABLE}=.data/nats-users/reader"


class CliError(Exception):
    """A failure the user can act on: what went wrong (`message`) and what to do next (`hint`)."""

    def __init__(self, message: str, hint: str = "", status: int = USER_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.status = status

    def render(self) -> str:
        """The lines for stderr."""
        return f"xdsbus: {self.message}\n" + (f"hint: {self.hint}\n" if self.hint else "")


def _scope_flag(args: argparse.Namespace) -> str:
    return f" --scope {args.scope}" if args.scope != "default" else ""


def explain(exc: Exception, args: argparse.Namespace) -> CliError | None:
    """The CliError saying what `exc` means for the user, or None when it is a bug."""
    if isinstance(exc, CliError):
        return exc
    message = str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionError):
        # From `bus.connect`: it names the servers and the credentials it tried, and why.
        if "authoriz" in message.lower() or "authenticat" in message.lower():
            return CliError(
                message,
                f"NATS refused these credentials: set those of a user who may read ({USER_VARIABLE} with "
                f"{PASSWORD_FILE_VARIABLE}, or {NKEY_FILE_VARIABLE}, or {CREDS_FILE_VARIABLE}); for the "
                f"local stack: {LOCAL_STACK_CREDENTIALS}",
            )
        return CliError(message, UNREACHABLE_HINT)
    if isinstance(exc, LayoutMissing):
        return CliError(
            f"NATS at {redact_url(args.nats_url)} has no xdsbus layout yet, so no ledger: {message}",
            "`xdsbus layout --apply` creates it (as the `layout` user), then start a builder; "
            "`make run` does both for the local stack",
        )
    if isinstance(exc, reader.HistoryPurged):
        return CliError(
            message,
            "versions older than the ledger's history window are gone; "
            f"`xdsbus ledger log{_scope_flag(args)}` lists those left",
        )
    if isinstance(exc, reader.VersionNotFound):
        return CliError(message, f"`xdsbus ledger log{_scope_flag(args)}` lists the versions")
    if isinstance(exc, LookupError | ValueError):
        return CliError(message)
    if isinstance(exc, TimeoutError | NatsError):
        return CliError(
            f"NATS at {redact_url(args.nats_url)} failed during the command: {message}",
            "run it again; if it keeps failing, `xdsbus layout` shows whether the server has its streams, "
            "and the server's log why it did not answer",
            status=FAILED,
        )
    if isinstance(exc, OSError):
        return CliError(f"cannot reach NATS at {redact_url(args.nats_url)}: {message}", UNREACHABLE_HINT)
    return None


async def ledger_scopes(bus: Bus) -> list[str]:
    """The scopes whose ledger holds at least one record."""
    prefix = f"{LEDGER_SUBJECT_PREFIX}."
    info = await bus.js.stream_info(LEDGER_STREAM, subjects_filter=f"{prefix}>")
    return sorted(subject.removeprefix(prefix) for subject in info.state.subjects or {})


async def no_ledger(bus: Bus, scope: str) -> CliError:
    """The error for a scope without a version yet, naming the scopes that have one."""
    others = [s for s in await ledger_scopes(bus) if s != scope]
    if others:
        hint = f"the scopes with a ledger are {', '.join(others)}: pick one with --scope or XDSBUS_SCOPE"
    else:
        hint = (
            "is a builder running (`make run` starts the local stack)? It publishes the first version "
            "once a source has sent events; `xdsbus status` shows what it decided"
        )
    return CliError(f"no ledger in scope {scope!r} yet", hint)
