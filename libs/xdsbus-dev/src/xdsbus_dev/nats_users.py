"""The NATS users of docs/design.md §10, one per role, and the nats-server `authorization` block that
grants each only what its service calls.

Written once here and rendered for `xdsbus up`, the test harness and deploy/nats (the ConfigMap's
`auth.conf`, compared with `render_authorization(DEPLOY_ROLES)` by tests/deploy). Passwords are never in
the rendered text: each user's password is the nats-server variable `$<ROLE>_NATS_PASSWORD`, which the
server reads from its environment (deploy/ fills it from the role's Secret).

The subjects follow what nats-py asks of JetStream: `$JS.API.STREAM.INFO.<stream>` for every handle a
service opens (`bus.open_bus`), `$KV.<bucket>.<key>` to write a key, `$O.<store>.>` to write an object,
direct and stream gets, consumers and their acks and flow control to read, and replies on the role's
own inboxes, `_INBOX_<user>.>`."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterable, Mapping, Sequence

from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, subject_token
from xdsbus.layout import (
    CHECKPOINTS_STORE,
    EVENT_BODIES_STORE,
    LARGE_RESOURCES_STORE,
    LEASES_BUCKET,
    LEDGER_BASES_STORE,
    LEDGER_CHANGES_STORE,
    LEDGER_STREAM,
    LEDGER_SUBJECT_PREFIX,
    PROXIES_BUCKET,
    RESOURCES_BUCKET,
    RETENTION_BUCKET,
    STATUS_BUCKET,
)
from xdsbus.lease import source_lease_name
from xdsbus.nats_options import inbox_prefix


def _kv(bucket: str) -> str:
    return f"KV_{bucket}"


def _obj(store: str) -> str:
    return f"OBJ_{store}"


def read_stream(stream: str) -> list[str]:
    """Publish grants to read `stream`: gets, consumers (ephemeral, ordered, durable), acks, flow control."""
    return [
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def write_kv(bucket: str, keys: str = ">") -> list[str]:
    """Put, create, update and delete of the keys `keys` (a subject pattern) of `bucket`."""
    return [f"$KV.{bucket}.{keys}"]


def write_store(store: str) -> list[str]:
    """Put and delete of objects of `store` (a put replacing an object purges its old chunks)."""
    return [f"$O.{store}.>", f"$JS.API.STREAM.PURGE.{_obj(store)}"]


# What every client asks: account info, and the info of each stream it opens a handle on.
BASE_PUBLISH = ("$JS.API.INFO", "$JS.API.STREAM.INFO.*", "$JS.API.STREAM.NAMES")


@dataclasses.dataclass(frozen=True)
class Role:
    """One NATS user: its name, the subjects it may publish to and subscribe to."""

    user: str
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    what: str = ""

    @property
    def password_variable(self) -> str:
        """The nats-server variable (from its environment) holding this user's password."""
        return f"{subject_token(self.user).upper().replace('-', '_')}_NATS_PASSWORD"


def _role(user: str, what: str, *grants: Iterable[str]) -> Role:
    publish: list[str] = list(BASE_PUBLISH)
    for grant in grants:
        publish.extend(s for s in grant if s not in publish)
    # JetStream replies (acks, API responses, pushed consumer messages) arrive on the client's inbox, and
    # only there: another role's replies (resource bodies among them) stay out of reach.
    return Role(user=user, publish=tuple(publish), subscribe=(f"{inbox_prefix(user)}.>",), what=what)


def layout_role() -> Role:
    """`xdsbus layout --apply`: creates and reshapes streams, buckets and stores; reads nothing else."""
    return _role("layout", "stream, bucket and object-store management", ["$JS.API.STREAM.>"])


def watcher_role(user: str, source_type: str, source_name: str = "*", leases: Sequence[str] = ()) -> Role:
    """A watcher of source `<source_type>/<source_name>` (`*`: every source of the type, for the registry
    watchers whose sources McpBridge names): its event subjects, its source lease and `leases`,
    claim-check objects and status; it reads checkpoints and events (registry watchers follow McpBridge)."""
    if source_name == "*":
        events = f"{EVENTS_SUBJECT_PREFIX}.{subject_token(source_type)}.*.>"
        source_lease = f"{source_lease_name(f'{source_type}/_')[:-1]}*"
    else:
        events = f"{EVENTS_SUBJECT_PREFIX}.{subject_token(source_type)}.{subject_token(source_name)}.>"
        source_lease = source_lease_name(f"{source_type}/{source_name}")
    return _role(
        user,
        f"watcher of {source_type}/{source_name}",
        [events],
        *(write_kv(LEASES_BUCKET, lease) for lease in (source_lease, *leases)),
        read_stream(_kv(LEASES_BUCKET)),
        write_store(EVENT_BODIES_STORE),
        read_stream(_obj(EVENT_BODIES_STORE)),
        # Status keys start with the object's kind, not its source: the bucket as a whole (as built).
        write_kv(STATUS_BUCKET),
        read_stream(_kv(STATUS_BUCKET)),
        read_stream(_obj(CHECKPOINTS_STORE)),
        read_stream(EVENTS_STREAM),
    )


def builder_role() -> Role:
    """The builder: the ledger, resource bodies, checkpoints, status, purges, its lease, term records."""
    return _role(
        "builder",
        "ledger, resource bodies, checkpoints, status, purges, its lease; reads events",
        [f"{LEDGER_SUBJECT_PREFIX}.>", f"$JS.API.STREAM.PURGE.{LEDGER_STREAM}"],
        [f"$JS.API.STREAM.PURGE.{EVENTS_STREAM}"],
        write_kv(RESOURCES_BUCKET),
        [f"$JS.API.STREAM.PURGE.{_kv(RESOURCES_BUCKET)}"],
        write_store(LARGE_RESOURCES_STORE),
        write_store(CHECKPOINTS_STORE),
        write_store(LEDGER_CHANGES_STORE),
        write_store(LEDGER_BASES_STORE),
        write_kv(STATUS_BUCKET),
        # Purging keys of the earlier status layout once moved (status_store.migrate_legacy_keys).
        [f"$JS.API.STREAM.PURGE.{_kv(STATUS_BUCKET)}"],
        write_kv(RETENTION_BUCKET),
        write_kv(LEASES_BUCKET, "builder.>"),
        *(read_stream(s) for s in _ALL_STREAMS),
    )


def edge_role() -> Role:
    """An edge: reads the ledger and the resource bodies; writes its proxies' sync state (it never reads
    it back: each edge owns the keys of its own proxies)."""
    return _role(
        "edge",
        "reads the ledger and resource bodies; writes proxy status",
        write_kv(PROXIES_BUCKET),
        *(read_stream(s) for s in _LEDGER_STREAMS),
    )


def reader_role() -> Role:
    """Console and CLI read commands: ledger, resources, checkpoints, status, proxy status and events."""
    return _role(
        "reader",
        "reads the ledger, status, proxy status and events",
        *(read_stream(s) for s in _READER_STREAMS),
        read_stream(_kv(PROXIES_BUCKET)),
    )


def operator_role() -> Role:
    """`rollback`/`unpin`: a reader that may also publish operator events (`LedgerPin`)."""
    return _role(
        "operator",
        "a reader that publishes LedgerPin events",
        # Any operator tool (`operator/cli`, `operator/console`), LedgerPin events only (docs/rollback.md).
        [f"{EVENTS_SUBJECT_PREFIX}.operator.*.LedgerPin"],
        *(read_stream(s) for s in _READER_STREAMS),
        read_stream(_kv(PROXIES_BUCKET)),
    )


_LEDGER_STREAMS = (
    LEDGER_STREAM,
    _kv(RESOURCES_BUCKET),
    _obj(LARGE_RESOURCES_STORE),
    _obj(LEDGER_CHANGES_STORE),
    _obj(LEDGER_BASES_STORE),
)
_READER_STREAMS = (
    *_LEDGER_STREAMS,
    _obj(CHECKPOINTS_STORE),
    _kv(STATUS_BUCKET),
    EVENTS_STREAM,
    _obj(EVENT_BODIES_STORE),
    # Who holds each lease (a holder's name, nothing secret): the console's sources view.
    _kv(LEASES_BUCKET),
)
_ALL_STREAMS = (*_READER_STREAMS, _kv(RETENTION_BUCKET))


def core_roles() -> list[Role]:
    """Every role but the watchers."""
    return [layout_role(), builder_role(), edge_role(), operator_role(), reader_role()]


def registry_watcher_roles() -> list[Role]:
    """watch-nacos, watch-consul and watch-eureka: every source of their type, their leadership lease."""
    return [
        watcher_role(f"watch-{kind}", kind, leases=[f"watch-{kind}.>"])
        for kind in ("nacos", "consul", "eureka")
    ]


def local_roles(file_source: str) -> list[Role]:
    """The users of `xdsbus up` and the test harness: the core roles, watch-file for `file/<file_source>`,
    watch-k8s for any cluster, and the registry watchers."""
    return [
        *core_roles(),
        watcher_role("watch-file", "file", file_source),
        watcher_role("watch-k8s", "k8s", leases=["watch-k8s.*.status"]),
        *registry_watcher_roles(),
    ]


# deploy/: watch-file reads /config (source file/config), watch-k8s publishes k8s/<cluster> (default).
DEPLOY_ROLES = (
    *core_roles(),
    watcher_role("watch-file", "file", "config"),
    watcher_role("watch-k8s", "k8s", "default", leases=["watch-k8s.default.status"]),
    *registry_watcher_roles(),
)

# docker-compose.yml: watch-file reads /config (file/config), its registries profile a second directory
# (file/compose-registries) as a user of its own.
COMPOSE_ROLES = (
    *core_roles(),
    watcher_role("watch-file", "file", "config"),
    watcher_role("watch-file-registries", "file", "compose-registries"),
    *registry_watcher_roles(),
)


def new_password() -> str:
    """A random password nats-server reads back from its environment as it was written: it parses a
    variable's value as a config value, so a leading digit or `-` would turn it into a number."""
    return "p" + secrets.token_hex(20)


def _allow(direction: str, subjects: Sequence[str]) -> list[str]:
    return [f"        {direction}: {{ allow: [", *(f'          "{s}"' for s in subjects), "        ] }"]


def render_authorization(
    roles: Sequence[Role], nkeys: Mapping[str, str] | None = None, passwords: Mapping[str, str] | None = None
) -> str:
    """The nats-server `authorization` block for `roles`, each password from `$<ROLE>_NATS_PASSWORD`,
    or written in when `passwords` has it (a config file as secret as the passwords, for compose); a
    role named in `nkeys` authenticates with that NKey public key instead (its seed stays with the
    client: XDSBUS_NATS_NKEY_FILE)."""
    nkeys = nkeys or {}
    passwords = passwords or {}
    lines = ["authorization {", "  users = ["]
    for role in roles:
        if role.user in nkeys:
            identity = [f"      nkey: {nkeys[role.user]}"]
        elif role.user in passwords:
            identity = [f"      user: {role.user}", f'      password: "{passwords[role.user]}"']
        else:
            identity = [f"      user: {role.user}", f"      password: ${role.password_variable}"]
        lines += [
            f"    # {role.user}: {role.what}",
            "    {",
            *identity,
            "      permissions: {",
            *_allow("publish", role.publish),
            *_allow("subscribe", role.subscribe),
            "      }",
            "    }",
        ]
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n"


def deploy_authorization() -> str:
    """deploy/nats/auth.conf: the users of deploy/ (tests/deploy checks the file equals this)."""
    header = (
        "# The NATS users of deploy/, one per role (docs/design.md §10). Generated: edit\n"
        "# libs/xdsbus-dev/src/xdsbus_dev/nats_users.py and run\n"
        "#   python -m xdsbus_dev.nats_users > deploy/nats/auth.conf\n"
        "# Each $<ROLE>_NATS_PASSWORD comes from the Secret xdsbus-nats-<role> (statefulset.yaml).\n"
    )
    return header + render_authorization(DEPLOY_ROLES)


if __name__ == "__main__":
    print(deploy_authorization(), end="")
