"""Kubernetes Secrets, opened and parsed, and the SDS secrets the configuration references.

Only referenced secrets are published: Envoy gets the certificates its listeners and clusters use,
never every key in the cluster. A rotation re-publishes the one Secret resource; listeners refer to it
by name and do not change.

What is published depends on the current Secret objects alone (a replay or a restart translates the
folded state from scratch): a Secret that cannot be used provides nothing, whatever an earlier version
of it provided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from xdsbus.contract.type_urls import SECRET
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import decode_object
from xdsbus.model.secrets import SecretModel, secret_name
from xdsbus.secretbox import SecretBox, SecretKeyError, is_sealed
from xdsbus.translate import envoy_secrets
from xdsbus.translate.k8s_secrets import K8sSecret, secret_models
from xdsbus.translate.resource_table import ResourceTable

# Who provides an SDS name when several Secrets do: a Secret under its own name first (`x-cacert`
# before the `x` Secret's ca.crt, as Istio looks them up), then by object ref.
_OWN_NAME = 0
_OTHER_NAME = 1


class SecretIndex:
    """Secret objects by SDS name, who uses each name, and who watches it."""

    def __init__(self, table: ResourceTable, secret_box: SecretBox | None) -> None:
        self._table = table
        self._box = secret_box
        self._objects: dict[ObjectRef, list[SecretModel]] = {}
        # Several Secrets (of two sources, or `x` and `x-cacert`) may provide one SDS name.
        self._by_name: dict[str, dict[ObjectRef, tuple[int, SecretModel]]] = {}
        # Per owner, the names it references (published) and the names it waits for (not published).
        self._owned: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._users: dict[str, set[str]] = {}
        self._watchers: dict[str, set[str]] = {}

    def fold(self, state: FoldState, ref: ObjectRef) -> tuple[set[str], Exception | None]:
        """Re-read one Secret object: the SDS names whose content may have changed, and why the Secret
        cannot be used (None when it can, or is gone). An unusable Secret provides nothing."""
        stored = state.get(ref)
        models: list[tuple[int, SecretModel]] = []
        error: Exception | None = None
        if stored is not None:
            try:
                secret = decode_object(self._open(ref, stored.value()), K8sSecret)
                own = secret_name(secret.metadata.namespace, secret.metadata.name)
                models = [(_OWN_NAME if m.name == own else _OTHER_NAME, m) for m in secret_models(secret)]
            except Exception as exc:
                error = exc
        changed: set[str] = set()
        for model in self._objects.pop(ref, []):
            changed.add(model.name)
            holders = self._by_name[model.name]
            del holders[ref]
            if not holders:
                del self._by_name[model.name]
        if models:
            self._objects[ref] = [model for _, model in models]
        for rank, model in models:
            changed.add(model.name)
            self._by_name.setdefault(model.name, {})[ref] = (rank, model)
        for name in sorted(changed):
            self._publish(name)
        return changed, error

    def _open(self, ref: ObjectRef, body: Any) -> Any:
        # Watchers always seal (docs/design.md §4): a plain body did not come from one, so it is refused.
        if not is_sealed(body):
            raise SecretKeyError("Secret body is not sealed; watchers seal every Secret they publish")
        if self._box is None:
            raise SecretKeyError("the builder has no secret key to open it (XDSBUS_SECRET_KEY)")
        try:
            return self._box.open(body, source=ref.source, kind=ref.kind, key=ref.key)
        except SecretKeyError:
            raise
        except (ValueError, TypeError) as exc:
            # A sealed envelope with fields of the right types but unusable values (a nonce AES-GCM
            # refuses, a plaintext that is not msgpack).
            raise SecretKeyError(f"Secret body cannot be opened: {exc}") from exc

    def get(self, name: str) -> SecretModel | None:
        """The secret published under an SDS name, if some Secret provides it."""
        holders = self._by_name.get(name)
        if not holders:
            return None
        return min(holders.items(), key=lambda item: (item[1][0], item[0]))[1][1]

    def users(self, names: Iterable[str]) -> set[str]:
        """Owners referencing or waiting for any of these names."""
        out: set[str] = set()
        for name in names:
            out |= self._users.get(name, set())
            out |= self._watchers.get(name, set())
        return out

    def set_used(self, owner: str, names: Iterable[str], watched: Iterable[str] = ()) -> None:
        """Make `names` exactly the SDS names `owner` references (they are published while some Secret
        provides them) and `watched` the names it waits for (they are not published: `users` reports
        their changes, so the owner can start referencing them)."""
        used = frozenset(names)
        waits = frozenset(watched) - used
        before_used, before_waits = self._owned.pop(owner, (frozenset(), frozenset()))
        for name in sorted(before_waits - waits):
            watchers = self._watchers[name]
            watchers.discard(owner)
            if not watchers:
                del self._watchers[name]
        for name in sorted(waits - before_waits):
            self._watchers.setdefault(name, set()).add(owner)
        for name in sorted(before_used - used):
            users = self._users[name]
            users.discard(owner)
            if not users:
                del self._users[name]
                self._publish(name)
        for name in sorted(used - before_used):
            self._users.setdefault(name, set()).add(owner)
            self._publish(name)
        if used or waits:
            self._owned[owner] = (used, waits)

    def _publish(self, name: str) -> None:
        model = self.get(name)
        if model is None or not self._users.get(name):
            self._table.remove(SECRET, name)
            return
        self._table.put(SECRET, name, envoy_secrets.build_secret(model).SerializeToString(deterministic=True))
