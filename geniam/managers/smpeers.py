# -*- test-case-name: tests.managers.test_slice,tests.loopback.test_sm -*-
"""
The slice manager's peer bookkeeping: who its peers are, who is calling.

L{SlicePeerMethods} is mixed into L{geniam.managers.slice.SliceManager}:
it learns the peers' URNs from their GetVersion (concurrent requests
share one round of calls; a peer whose probe is answered again is learned
then), splits the peers for a call into those to call, those whose URN
is not known yet and those left out (the caller, and the slice manager
itself), and routes a call naming slivers to the peers whose authority
minted them (SEARCHFAILED for slivers no peer minted).

The functions name the caller: its URN, and the key C{call_id} replay
uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.errors import GeniCode, GeniError
from geniam.managers.adcache import AdvertisementCache
from geniam.managers.arguments import Target
from geniam.managers.fanout import ERROR, FanOut, PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.managers.shared import Shared
from geniam.urn import URN, parse_urn

if TYPE_CHECKING:
    from geniam.managers.slice import SliceManagerInfo, SliceManagerSettings, _Call

CALL_ID_OPTION = "call_id"


def caller_urn(caller: Any) -> str | None:
    """The URN of the caller (a verified L{GID} or anything with C{urn})."""
    urn = getattr(caller, "urn", None)
    return urn if isinstance(urn, str) and urn else None


def known_code(code: int | None) -> GeniCode:
    """A peer's C{geni_code} as a L{GeniCode}: unknown codes are generic errors, none is RPCERROR."""
    if code is None:
        return GeniCode.RPCERROR
    try:
        return GeniCode(code)
    except ValueError:
        return GeniCode.ERROR


def _urn_key(urn: str | None) -> str | None:
    if urn is None:
        return None
    try:
        return parse_urn(urn).key
    except GeniError:
        return None


def caller_key(caller: Any) -> str:
    """A normalised identifier of the caller, for call_id replay."""
    urn = caller_urn(caller)
    if urn is not None:
        try:
            return parse_urn(urn).key
        except GeniError:
            return urn
    fingerprint = getattr(caller, "fingerprint", None)
    if isinstance(fingerprint, bytes):
        return fingerprint.hex()
    return repr(caller)


class SlicePeerMethods:
    """
    Learning the peers' URNs, and choosing the peers of a call.

    @ivar records: the peers, in the configured order.
    """

    log: Logger
    records: list[PeerRecord]
    info: SliceManagerInfo
    settings: SliceManagerSettings
    fanout: FanOut
    cache: AdvertisementCache
    _clock: IReactorTime
    _order: dict[int, int]
    _learning: Shared[None] | None

    def learn_versions(self, records: Sequence[PeerRecord] | None = None, timeout: float | None = None) -> Deferred[None]:
        """
        Ask peers for their GetVersion and learn their URNs (all peers by default).

        Concurrent requests share one round of calls.

        @param timeout: seconds the round may take (default: the peer timeout).
        @return: a Deferred firing when the round is over.
        """
        if self._learning is None or self._learning.done:
            chosen = list(self.records if records is None else records)
            self._learning = Shared(Deferred.fromCoroutine(self._learn(chosen, timeout)))
        return self._learning.wait()

    def _alive(self, record: PeerRecord, struct: Any) -> None:
        """A probe was answered: learn the peer's version if needed, and drop advertisements lacking it."""
        if not record.known or record.version is None:
            try:
                record.learn(struct)
            except GeniError as e:
                record.failed_to_learn(e)
        if self.cache.drop_partial():
            self.log.info("{peer} answers again: dropped the cached advertisements lacking it", peer=record.name)

    async def _learn(self, records: list[PeerRecord], timeout: float | None = None) -> None:
        if not records:
            return
        deadline = self._clock.seconds() + (self.settings.peer_timeout if timeout is None else timeout)
        outcomes = await self.fanout.run([PeerCall(r, "GetVersion", ({},)) for r in records], deadline)
        for outcome in outcomes:
            record = outcome.record
            if outcome.struct is None:
                record.failed_to_learn(GeniError(known_code(outcome.code), outcome.reason or outcome.status))
                continue
            was_known = record.known
            try:
                record.learn(outcome.struct)
            except GeniError as e:
                record.failed_to_learn(e)
                self.log.warn("peer {url}: {reason}", url=record.url, reason=e.output)
            else:
                self.log.info("peer {url} is {urn}", url=record.url, urn=record.urn)
                if not was_known:
                    self.cache.drop_partial()

    def _partition(self, caller: Any) -> tuple[list[PeerRecord], list[PeerRecord], list[PeerRecord]]:
        """
        Split the peers for a call: those to call, those not known yet, and
        those left out (the caller, and this slice manager itself).
        """
        caller = _urn_key(caller_urn(caller))
        own = _urn_key(self.info.urn)
        callable_: list[PeerRecord] = []
        unknown: list[PeerRecord] = []
        excluded: list[PeerRecord] = []
        for record in self.records:
            if not record.known:
                unknown.append(record)
            elif record.has_key(caller) or record.has_key(own):
                excluded.append(record)
            else:
                callable_.append(record)
        if unknown:
            self.learn_versions(unknown).addErrback(lambda f: self.log.failure("learning peer versions failed", f))
        return callable_, unknown, excluded

    def _not_known(self, record: PeerRecord) -> PeerOutcome:
        error = record.version_error
        code = int(error.code) if error is not None else int(GeniCode.UNAVAILABLE)
        why = error.output if error is not None else "it has not answered GetVersion yet"
        return PeerOutcome(record, ERROR, 0.0, None, code, f"not called: its URN is unknown ({why})", called=False)

    def _in_order(self, outcomes: list[PeerOutcome]) -> list[PeerOutcome]:
        return sorted(outcomes, key=lambda o: self._order.get(id(o.record), 0))

    def _is_peer(self, caller: Any) -> bool:
        urn = caller_urn(caller)
        return any(record.is_urn(urn) for record in self.records)

    def _route(self, call: _Call, target: Target) -> tuple[list[tuple[PeerRecord, list[str]]], list[PeerRecord]]:
        """
        Choose the peers for a call naming C{target}.

        @return: C{(peer, its URNs)} pairs, and the peers not known yet
            (for a slice; slivers go only to known peers).
        @raise GeniError: SEARCHFAILED for slivers no known peer minted.
        """
        callable_, unknown, excluded = self._partition(call.caller)
        if target.slice_urn is not None:
            return [(r, [target.slice_urn]) for r in callable_], unknown
        routed: dict[int, tuple[PeerRecord, list[str]]] = {}
        lost: list[str] = []
        for urn in target.sliver_urns:
            parsed = parse_urn(urn)
            owner = self._owner(parsed, callable_)
            if owner is None:
                lost.append(urn)
                continue
            routed.setdefault(id(owner), (owner, []))[1].append(urn)
        if lost:
            detail = ""
            if any(self._owner(parse_urn(u), excluded) for u in lost):
                detail = " (slivers of the calling aggregate are not forwarded back to it)"
            elif unknown:
                detail = " (some aggregates are not reachable now: " + ", ".join(r.url for r in unknown) + ")"
            raise GeniError(
                GeniCode.SEARCHFAILED,
                "no aggregate of this slice manager minted "
                + ", ".join(lost[:10])
                + (f" and {len(lost) - 10} more" if len(lost) > 10 else "")
                + detail,
            )
        pairs = sorted(routed.values(), key=lambda pair: self._order.get(id(pair[0]), 0))
        return pairs, []

    @staticmethod
    def _owner(urn: URN, records: Sequence[PeerRecord]) -> PeerRecord | None:
        for record in records:
            if record.owns(urn):
                return record
        return None
