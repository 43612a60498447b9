"""TLS Secrets: opened, checked, and published as the SDS secrets some listener or cluster references."""

from __future__ import annotations

from collections.abc import Iterable

from xdsbus.contract.status import Verdict
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.secretbox import SecretBox
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.secret_index import SecretIndex

SECRET = "Secret"


class SecretsHandler:
    """Folds Secrets into the SDS names they provide; the TlsSecrets view of the other handlers."""

    kinds = (SECRET,)

    def __init__(self, table: ResourceTable, status: StatusBook, secret_box: SecretBox | None) -> None:
        self._status = status
        self.index = SecretIndex(table, secret_box)

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read a Secret; touches the SDS names whose content may have changed.

        A Secret that cannot be used is rejected and provides nothing: what a previous version provided
        is withdrawn too, since a full build (replay, restart) never sees that version."""
        names, error = self.index.fold(state, ref)
        if error is not None:
            self._status.set(ref, Verdict.REJECTED, f"Secret {ref.key}: {rejection_reason(error)}")
        elif state.get(ref) is None:
            self._status.clear(ref)
        else:
            self._status.set(ref, Verdict.ACCEPTED)
        return Touched(secrets=frozenset(names))

    def holds(self, name: str, certificate: bool) -> bool:
        """Whether an SDS name is provided, as a certificate with its key or as a CA bundle."""
        model = self.index.get(name)
        if model is None:
            return False
        return model.certificate is not None if certificate else bool(model.trusted_ca)

    def set_used(self, owner: str, names: Iterable[str], watched: Iterable[str] = ()) -> None:
        """Make `names` exactly what `owner` references (published) and `watched` what it waits for."""
        self.index.set_used(owner, names, watched)

    def users(self, names: Iterable[str]) -> set[str]:
        """Owners referencing or waiting for any of these names."""
        return self.index.users(names)
