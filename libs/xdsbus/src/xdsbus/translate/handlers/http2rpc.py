"""Http2Rpc objects: parsed on Higress's data plane and looked up by the Ingresses naming them; reported
unsupported on stock Envoy (docs/higress.md §4)."""

from __future__ import annotations

from collections.abc import Callable

from xdsbus.contract.status import Verdict
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.routes import DubboTranscoding
from xdsbus.translate.dataplane import HIGRESS, UNSUPPORTED_HTTP2RPC
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.http2rpc import HTTP2RPC_KIND, parse_http2rpc
from xdsbus.translate.ingress_rules import RpcLookup, http2rpc_dependency
from xdsbus.translate.rejections import rejection_reason


class Http2RpcHandler:
    """Keeps each Http2Rpc's transcoding (or why it has none) by object name, as Higress keys them."""

    kinds = (HTTP2RPC_KIND,)

    def __init__(
        self, status: StatusBook, dataplane: str, dependents: Callable[[str], set[ObjectRef]]
    ) -> None:
        self._status = status
        self._higress = dataplane == HIGRESS
        self._dependents = dependents
        # name -> {ref: transcoding or the reason it has none}; the first ref in order answers a lookup.
        self._by_name: dict[str, dict[ObjectRef, DubboTranscoding | str]] = {}

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read one Http2Rpc; the Ingresses naming it are translated again."""
        name = ref.key.rpartition("/")[2]
        entries = self._by_name.setdefault(name, {})
        entries.pop(ref, None)
        stored = state.get(ref)
        if stored is None:
            self._status.clear(ref)
        elif not self._higress:
            entries[ref] = UNSUPPORTED_HTTP2RPC
            self._status.set(ref, Verdict.REJECTED, f"Http2Rpc {ref.key}: {UNSUPPORTED_HTTP2RPC}")
        else:
            try:
                entries[ref] = parse_http2rpc(stored.value())
            except Exception as exc:
                reason = rejection_reason(exc)
                entries[ref] = reason
                self._status.set(ref, Verdict.REJECTED, f"Http2Rpc {ref.key}: {reason}")
            else:
                self._status.set(ref, Verdict.ACCEPTED)
        if not entries:
            del self._by_name[name]
        return Touched(ingresses=frozenset(self._dependents(http2rpc_dependency(name))))

    def lookup(self, name: str) -> DubboTranscoding | str:
        """The transcoding of the Http2Rpc named `name`, or why the routes naming it answer 503."""
        entries = self._by_name.get(name)
        if not entries:
            return "not found"
        return entries[min(entries)]

    def rpc_lookup(self) -> RpcLookup | None:
        """What Ingress translation looks Http2Rpcs up with: None on stock Envoy, which cannot serve them."""
        return self.lookup if self._higress else None
