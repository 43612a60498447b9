"""Kubernetes Secrets, opened and parsed, and the SDS secrets the configuration references.

Only referenced secrets are published: Envoy gets the certificates its listeners and clusters use,
never every key in the cluster. A rotation re-publishes the one Secret resource; listeners refer to it
by name and do not change.
"""

from __future__ import annotations

from collections.abc import Iterable

from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import decode_object
from xdsbus.model.secrets import SecretModel
from xdsbus.secretbox import SecretBox, SecretKeyError, is_sealed
from xdsbus.translate import envoy_secrets
from xdsbus.translate.k8s_secrets import K8sSecret, secret_models
from xdsbus.translate.resources import SECRET, ResourceTable


class SecretIndex:
    """Secret objects by SDS name, and who uses each name."""

    def __init__(self, table: ResourceTable, secret_box: SecretBox | None) -> None:
        self._table = table
        self._box = secret_box
        self._objects: dict[ObjectRef, list[SecretModel]] = {}
        # Two sources may hold a Secret of the same namespace/name: the first by ref wins.
        self._by_name: dict[str, dict[ObjectRef, SecretModel]] = {}
        self._owned: dict[str, set[str]] = {}
        self._users: dict[str, set[str]] = {}

    def fold(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read one Secret object; returns the SDS names whose content may have changed.

        Raises (with the reason) when the Secret cannot be used; what it provided before stays
        published, so a bad edit never takes a working certificate away."""
        stored = state.get(ref)
        models: list[SecretModel] = []
        if stored is not None:
            models = secret_models(decode_object(self._open(stored.body), K8sSecret))
        changed: set[str] = set()
        for model in self._objects.pop(ref, []):
            changed.add(model.name)
            holders = self._by_name[model.name]
            del holders[ref]
            if not holders:
                del self._by_name[model.name]
        if models:
            self._objects[ref] = models
        for model in models:
            changed.add(model.name)
            self._by_name.setdefault(model.name, {})[ref] = model
        for name in sorted(changed):
            self._publish(name)
        return changed

    def _open(self, body: object) -> object:
        if not is_sealed(body):
            return body
        if self._box is None:
            raise SecretKeyError("the builder has no secret key to open it (XDSBUS_SECRET_KEY)")
        return self._box.open(body)

    def get(self, name: str) -> SecretModel | None:
        """The secret published under an SDS name, if some Secret provides it."""
        holders = self._by_name.get(name)
        if not holders:
            return None
        return holders[min(holders)]

    def users(self, names: Iterable[str]) -> set[str]:
        """Owners referencing any of these names."""
        out: set[str] = set()
        for name in names:
            out |= self._users.get(name, set())
        return out

    def set_used(self, owner: str, names: Iterable[str]) -> None:
        """Make `names` exactly the SDS names `owner` references."""
        wanted = set(names)
        before = self._owned.pop(owner, set())
        for name in sorted(before - wanted):
            users = self._users[name]
            users.discard(owner)
            if not users:
                del self._users[name]
                self._publish(name)
        for name in sorted(wanted - before):
            self._users.setdefault(name, set()).add(owner)
            self._publish(name)
        if wanted:
            self._owned[owner] = wanted

    def _publish(self, name: str) -> None:
        model = self.get(name)
        if model is None or not self._users.get(name):
            self._table.remove(SECRET, name)
            return
        self._table.put(SECRET, name, envoy_secrets.build_secret(model).SerializeToString(deterministic=True))
