"""`xdsbus keyring`: the keys of a key file, and the steps of a rotation (docs/design.md §4, §10).

A key file holds one base64 key a line, newest first: the first key seals, every key opens. Every change
writes a new file (mode 0600 from its first byte) and renames it over the old one, so a service starting
meanwhile reads either keyring, never half of one. The rotation of a deployment with several services is
`add` (every service can open with the new key), `promote` (it seals with it; restarted watchers re-seal
every Secret), then `drop` of the old key once nothing sealed with it is needed any more
(docs/architecture.md, "Rotating the key"). `rotate` is `add` and `promote` at once, for a single host.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from xdsbus.secretbox import (
    KEY_FILE_ENV,
    LOCAL_KEY_FILE,
    SecretKeyError,
    key_id,
    new_key,
    read_key_file,
    write_key_file,
)

HELP = "list and rotate the keys that seal Secret bodies (a key file)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The keyring subcommands and their flags."""
    default = os.environ.get(KEY_FILE_ENV) or str(LOCAL_KEY_FILE)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--key-file",
        type=Path,
        default=Path(default),
        help=f"the key file (default: ${KEY_FILE_ENV} or {LOCAL_KEY_FILE})",
    )
    sub = parser.add_subparsers(dest="keyring_command", required=True)
    sub.add_parser("list", parents=[common], help="key ids, the sealing key first")
    sub.add_parser("add", parents=[common], help="append a fresh key: opens, does not seal yet")
    promote = sub.add_parser("promote", parents=[common], help="make a key the sealing key (first)")
    promote.add_argument("kid", help="id of a key in the file")
    sub.add_parser("rotate", parents=[common], help="prepend a fresh key: it seals from the next start")
    drop = sub.add_parser("drop", parents=[common], help="remove a key that no longer seals")
    drop.add_argument("kid", help="id of a key in the file")


def run(args: argparse.Namespace) -> int:
    """Run one keyring subcommand; exit status 2 with a message on a usage error."""
    try:
        keys = _changed(args.keyring_command, args.key_file, getattr(args, "kid", ""))
    except (SecretKeyError, OSError) as exc:
        print(f"xdsbus keyring: {exc}", file=sys.stderr)
        return 2
    for index, key in enumerate(keys):
        print(f"{key_id(key)}  {'seals and opens' if index == 0 else 'opens'}")
    return 0


def _changed(command: str, path: Path, kid: str) -> list[bytes]:
    """The keyring after `command`, written to `path` unless the command only reads."""
    if command in ("add", "rotate") and not path.exists():
        keys: list[bytes] = []
    else:
        keys = read_key_file(path)
    kids = [key_id(key) for key in keys]
    if command == "list":
        return keys
    if command == "add":
        keys = [*keys, new_key()]
    elif command == "rotate":
        keys = [new_key(), *keys]
    elif kid not in kids:
        raise SecretKeyError(f"{path}: no key {kid} (it holds {', '.join(kids)})")
    elif command == "promote":
        keys.insert(0, keys.pop(kids.index(kid)))
    elif kids.index(kid) == 0:
        raise SecretKeyError(f"{path}: {kid} is the sealing key; promote another key first")
    else:
        del keys[kids.index(kid)]
    write_key_file(path, keys)
    return keys
