# -*- test-case-name: tests.managers.test_slice_faults,tests.managers.test_slice,tests.loopback.test_twophase -*-
"""
The slice manager's Allocate: all or nothing across aggregates.

L{SliceAllocateMethods} is mixed into
L{geniam.managers.slice.SliceManager}. It splits the request RSpec by
C{component_manager_id} (an aggregate whose URN is not known yet is asked
GetVersion first), sends each aggregate its part, in two phases on the
aggregates' transactions when they all serve them
(L{geniam.managers.twophase}) or else directly; when a part fails (or
timed out, and may still be carried out late), what the other parts
allocated is undone (L{geniam.managers.undo}) unless C{geni_best_effort}
is true, and the answer says so in C{geniam_undo}. The answer is the
merged manifest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from geniam.errors import GeniCode, GeniError
from geniam.managers.adcache import AdvertisementCache
from geniam.managers.arguments import flag
from geniam.managers.fanout import PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.managers.rollup import rollup
from geniam.managers.smpeers import CALL_ID_OPTION
from geniam.managers.twophase import PATH_FIELD, TWO_PHASE, UNCERTAIN_FIELD, TwoPhase, allocation_path, uncertain, undone
from geniam.managers.undo import Undoer, UndoEntry, part_marks
from geniam.trust.forwarding import Forwarding
from geniam.urn import parse_urn

if TYPE_CHECKING:
    from geniam.managers.slice import Mergers, SliceManagerSettings, _Call

UNDO_FIELD = "geniam_undo"


class SliceAllocateMethods:
    """The work of Allocate, once a call is checked: split, allocate (or two phases), undo on failure."""

    mergers: Mergers
    settings: SliceManagerSettings
    cache: AdvertisementCache
    undo: Undoer
    _clock: IReactorTime
    _partition: Any
    learn_versions: Any
    _cpu: Any
    _options_for: Any
    _fan: Any
    _shaped: Any
    _manifest_struct: Any

    async def _allocate(self, call: _Call, slice_urn: Any, rspec: Any) -> dict[str, Any]:
        slice_urn = str(parse_urn(slice_urn, "slice"))
        if not isinstance(rspec, str):
            raise GeniError(GeniCode.BADARGS, "rspec must be a string")
        best_effort = flag(call.options, "geni_best_effort")
        forwarding = await call.context.forwarding_for_slice("Allocate", slice_urn, call.options)
        callable_, unknown, excluded = self._partition(call.caller)
        try:
            parts = await self._cpu(self.mergers.split, rspec, [r.urn for r in callable_])
        except GeniError as e:
            if unknown:
                # An aggregate that was down when the slice manager started may be back: learn it now.
                await self.learn_versions(unknown, self.settings.probe_timeout)
                callable_, unknown, excluded = self._partition(call.caller)
            try:
                parts = await self._cpu(self.mergers.split, rspec, [r.urn for r in callable_])
            except GeniError:
                raise self._unroutable(e, unknown, excluded) from None
        by_urn = {r.urn: r for r in callable_}
        options = self._options_for(call, forwarding)
        credentials = list(forwarding.credentials)
        pairs = [(by_urn[urn], part) for urn, part in parts.items()]
        path = await allocation_path(
            pairs, best_effort, lambda calls: Deferred.fromCoroutine(self._fan(call, calls)), slice_urn, credentials, options
        )
        # A two-phase allocation whose Begins failed left only transactions, aborted already: nothing to undo;
        # one whose Commits only lack answers that could not be learned is left as it is.
        undoable = True
        unresolved: list[str] = []
        try:
            if path == TWO_PHASE:
                phases = await TwoPhase(
                    self._clock, lambda calls: Deferred.fromCoroutine(self._fan_manifests(call, calls)),
                    lambda outcomes: rollup(outcomes, False, False), self.settings.commit_retry,
                ).run(slice_urn, credentials, pairs, options, call.deadline)
                outcomes, code, output, undoable = phases.outcomes, phases.code, phases.output, phases.failed
                unresolved = phases.uncertain
            else:
                calls = [PeerCall(record, "Allocate", (slice_urn, credentials, part, options)) for record, part in pairs]
                outcomes = await self._fan_manifests(call, calls)
                code, output = rollup(outcomes, False, best_effort)
        finally:
            self.cache.invalidate()
        undo: dict[str, Any] | None = None
        if undoable and (code != GeniCode.SUCCESS or any(uncertain(o) for o in outcomes)):
            entries = self._undo_entries(call, slice_urn, forwarding, options, outcomes, list(parts.values()), best_effort)
            if entries:
                undo, output = await self._undo(call, entries, output)
                outcomes = [_rolled_back(o) if any(e.peer_url == o.record.url and e.slivers for e in entries) else o for o in outcomes]
        if unresolved and undo is None:
            output = (
                f"{output}; the outcome of the Commit at {', '.join(unresolved)} could not be learned:"
                " nothing was rolled back (Describe the slice there)"
            )
        struct = await self._manifest_struct("Allocate", outcomes, slice_urn, code, output)
        if unresolved and undo is None:
            struct[UNCERTAIN_FIELD] = unresolved
        struct[PATH_FIELD] = path
        struct["output"] = f"{output} [{path}]" if output else f"allocated by the {path} path"
        if undo is not None:
            struct[UNDO_FIELD] = undo
        return struct

    async def _fan_manifests(self, call: _Call, calls: list[PeerCall]) -> list[PeerOutcome]:
        """Make C{calls} that answer like Allocate; outcomes not shaped so are errors."""
        return self._shaped(
            await self._fan(call, calls, rspecs="manifest"),
            lambda v: isinstance(v, dict) and isinstance(v.get("geni_rspec"), str) and isinstance(v.get("geni_slivers"), list),
            "a struct with geni_rspec and geni_slivers",
        )

    @staticmethod
    def _unroutable(error: GeniError, unknown: list[PeerRecord], excluded: list[PeerRecord]) -> GeniError:
        notes = []
        if unknown:
            notes.append("not reachable now: " + ", ".join(r.url for r in unknown))
        if excluded:
            notes.append("not forwarded to: " + ", ".join(r.name for r in excluded))
        return GeniError(error.code, error.output + (f" ({'; '.join(notes)})" if notes else ""))

    def _undo_entries(
        self,
        call: _Call,
        slice_urn: str,
        forwarding: Forwarding,
        options: dict[str, Any],
        outcomes: list[PeerOutcome],
        parts: list[str],
        best_effort: bool,
    ) -> list[UndoEntry]:
        """
        What a failed Allocate leaves to undo: the slivers made where it
        succeeded (unless best effort keeps them), and whatever a late
        aggregate may still make where the outcome is unknown.
        """
        entries = []
        now = self._clock.seconds()
        for outcome, part in zip(outcomes, parts):
            slivers: list[str] | None
            if outcome.ok and not best_effort:
                slivers = [
                    s["geni_sliver_urn"]
                    for s in outcome.value["geni_slivers"]
                    if isinstance(s, dict) and isinstance(s.get("geni_sliver_urn"), str)
                ]
                if not slivers:
                    continue
            elif uncertain(outcome):
                slivers = None
            else:
                continue
            try:
                client_ids, slots = part_marks(part)
            except GeniError:
                client_ids, slots = [], []
            entries.append(
                UndoEntry(
                    call.call_id,
                    outcome.record.url,
                    outcome.name,
                    slice_urn,
                    slivers,
                    client_ids,
                    slots,
                    list(forwarding.credentials),
                    {k: v for k, v in options.items() if k != CALL_ID_OPTION},
                    now,
                )
            )
        return entries

    async def _undo(self, call: _Call, entries: list[UndoEntry], output: str) -> tuple[dict[str, Any], str]:
        """
        Write the undo down, try it once before answering, and say how it went.

        @return: the C{geniam_undo} member and the output to answer.
        """
        self.undo.open(entries)
        deadline = max(call.deadline, self._clock.seconds() + self.settings.peer_timeout)
        pending = {e.key for e in await self.undo.attempt(entries, deadline)}
        self.cache.invalidate()
        done = [e for e in entries if e.key not in pending]
        waiting = [e for e in entries if e.key in pending]
        notes = []
        if done:
            notes.append("undone at " + ", ".join(e.peer_name for e in done))
        if waiting:
            notes.append(
                "undo still in progress at "
                + "; ".join(f"{e.peer_name} ({e.last})" for e in waiting)
                + " - retried until the aggregate confirms"
            )
        text = "allocation is all or nothing: " + "; ".join(notes)
        undo = {
            "done": [e.peer_name for e in done],
            "pending": [{"name": e.peer_name, "reason": e.last} for e in waiting],
        }
        return undo, (f"{output}; {text}" if output else text)


def _rolled_back(outcome: PeerOutcome) -> PeerOutcome:
    """A successful Allocate whose slivers are being released: reported as an error."""
    return undone(outcome, "allocated, then undone because another aggregate failed")
