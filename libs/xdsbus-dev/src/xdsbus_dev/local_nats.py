"""The NATS users of `xdsbus up` and docker-compose.yml (docs/design.md §10): one password file per role,
kept across runs, and the nats-server config that admits them with their permissions.

`python -m xdsbus_dev.local_nats DIR --owner UID:GID` is compose's one-shot: the compose users, their
passwords written into DIR/nats.conf (the nats image has no shell to read them from files)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from xdsbus.nats_options import PASSWORD_FILE_VARIABLE
from xdsbus_dev.nats_users import COMPOSE_ROLES, Role, new_password, render_authorization


class LocalNatsUsers:
    """Password files `<dir>/<user>` holding `user:password` (what XDSBUS_NATS_PASSWORD_FILE reads when
    XDSBUS_NATS_USER is unset), mode 0600 from their first byte, and `<dir>/nats.conf`."""

    def __init__(self, directory: Path, roles: Sequence[Role]) -> None:
        self.directory = directory
        self.roles = list(roles)
        self._passwords: dict[str, str] = {}

    @property
    def config_file(self) -> Path:
        return self.directory / "nats.conf"

    def password_file(self, user: str) -> Path:
        """The `user:password` file of `user`."""
        return self.directory / user

    def ensure(self, *, inline: bool = False) -> None:
        """Create the missing password files, read the others, and write the server config (with the
        passwords in it when `inline`, else as variables of `server_env`)."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for role in self.roles:
            path = self.password_file(role.user)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                _, _, password = path.read_text().strip().partition(":")
                self._passwords[role.user] = password
                continue
            password = new_password()
            with os.fdopen(fd, "w") as out:
                out.write(f"{role.user}:{password}\n")
            self._passwords[role.user] = password
        passwords = self._passwords if inline else None
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(render_authorization(self.roles, passwords=passwords))

    def client_env(self, user: str) -> dict[str, str]:
        """What a service needs to connect as `user`."""
        return {PASSWORD_FILE_VARIABLE: str(self.password_file(user))}

    def server_env(self) -> dict[str, str]:
        """The passwords nats-server reads from its environment (`$<ROLE>_NATS_PASSWORD` in the config)."""
        return {role.password_variable: self._passwords[role.user] for role in self.roles}


def main(argv: Sequence[str] | None = None) -> int:
    """Compose's NATS users: password files and a config with the passwords in DIR, owned by --owner."""
    parser = argparse.ArgumentParser(prog="python -m xdsbus_dev.local_nats", description=main.__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--owner", default="", help="UID:GID of every file (the services' user)")
    args = parser.parse_args(argv)
    users = LocalNatsUsers(args.directory, COMPOSE_ROLES)
    users.ensure(inline=True)
    if args.owner:
        uid, _, gid = args.owner.partition(":")
        for path in (args.directory, users.config_file, *(users.password_file(r.user) for r in users.roles)):
            os.chown(path, int(uid), int(gid or uid))
    print(f"NATS users of {', '.join(r.user for r in users.roles)} in {args.directory}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
