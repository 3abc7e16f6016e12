# -*- test-case-name: tests.managers.test_slice -*-
"""
The Slice Manager: one AM API v3 endpoint in front of many aggregates.

L{SliceManager} is the API object the XML-RPC resource dispatches to,
with the same methods as the aggregate manager. Each call is checked,
then sent to every peer concerned at once (L{FanOut}: per-peer timeout,
overall deadline, circuit breakers, bounded concurrency), and what they
answer is merged (L{geniam.managers.rollup}):

  - ListResources: the merged advertisement, from the L{AdvertisementCache}
    unless the option C{cached} is false;
  - Describe, Allocate, Provision: one merged manifest, C{geni_urn},
    C{geni_slivers} concatenated;
  - Renew, PerformOperationalAction, Delete: the sliver lists joined;
  - Status: C{geni_urn} and C{geni_slivers} concatenated;
  - Shutdown: C{true} when every aggregate shut the slice down;
  - GetVersion: describes the slice manager itself (C{interface:
    slicemgr}, C{peers}: URN to URL); it is not forwarded.

Merged RSpecs carry C{<statistics call>} with one C{<aggregate>} per
peer; every forwarded call's struct carries C{geniam_statistics}.

Routing: a call naming a slice goes to every peer; a call naming slivers
goes to the peers whose authority minted them (SEARCHFAILED for slivers
no peer minted); Allocate sends each peer only its part of the request
RSpec, split by C{component_manager_id} (BADARGS for elements naming no
known aggregate; an aggregate whose URN is not known yet is asked
GetVersion first). Allocate is all or nothing across aggregates: in two
phases on the aggregates' transactions when they all serve them
(L{geniam.managers.twophase}, which also says when), otherwise when a
part fails, the slivers the other parts allocated are deleted again and
the call fails, unless C{geni_best_effort} is true. A part that timed out
may still be carried out late, so it is checked and undone there too.
The undo is written down first (L{geniam.managers.undo}), tried once
before the answer, and retried until each aggregate confirms; the answer
says what was undone and what is still pending (C{geniam_undo}).

Reads (ListResources, Describe, Status) answer success with what the
reachable aggregates said, and name the others in C{output} and in
C{geniam_statistics}; changing calls keep all or nothing (or best effort).

Repeats and loops: a repeated C{(caller, method, call_id)} gets the
original answer (L{CallReplay}); a call is never sent to the peer that
made it (its URN, learned from GetVersion, is the caller's), nor to this
slice manager itself; every forwarded call carries a C{call_id} (the
caller's or a fresh one), and a peer sending back a C{call_id} this slice
manager is forwarding is refused with REFUSED.

Credentials: each method takes the call's context
(L{geniam.trust.context.CallContext}) and asks it what to forward once it
knows the slice; the policy is L{geniam.trust.forwarding}.

Extra return struct members: C{geniam_statistics} on every forwarded
call (see L{geniam.managers.rollup}); C{geniam_undo} on an Allocate that
had to be undone: C{{done: [aggregate], pending: [{name, reason}]}};
C{geniam_cache} on ListResources:
C{{hit, age, stale}}, whether the advertisement came from the cache, how
old it is in seconds, and whether it is being refreshed.

Options understood besides the standard ones:
  - C{cached} (ListResources, default true): false bypasses the cache
    (the fresh advertisement is then cached);
  - C{geni_best_effort} (Allocate): keep the parts that succeeded.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from geniam.errors import GeniCode, GeniError, success_struct
from geniam.managers.adcache import DEFAULT_PARTIAL_TTL, AdvertisementCache, Fetched, ad_cache_key
from geniam.managers.arguments import Target, flag, options_struct, rspec_version, target_urns
from geniam.managers.breaker import BreakerState, CircuitBreaker
from geniam.managers.fanout import ERROR, FanOut, PeerCall, PeerOutcome
from geniam.managers.health import (
    DEFAULT_HUNG_AFTER,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_MAX_INTERVAL,
    DEFAULT_PROBE_TIMEOUT,
    PeerHealth,
)
from geniam.managers.peers import Peer, PeerRecord
from geniam.managers.replay import CallReplay
from geniam.managers.rollup import (
    STATISTICS_FIELD,
    concatenated,
    first_member,
    result_struct,
    rollup,
    rspec_outcomes,
    statistics,
)
from geniam.managers.shared import Shared
from geniam.managers.transactionapi import TRANSACTION_METHODS, TRANSACTIONS_EXTENSION
from geniam.managers.smtransactions import SliceTransactionMethods
from geniam.managers.twophase import (
    DEFAULT_COMMIT_RETRY,
    PATH_FIELD,
    TWO_PHASE,
    TwoPhase,
    allocation_path,
    uncertain,
    undone,
)
from geniam.managers.undo import DEFAULT_UNDO_GIVE_UP, DEFAULT_UNDO_RETRY, Undoer, UndoEntry, UndoJournal, part_marks
from geniam.managers.version import SUPPORTED_RSPECS, get_version_struct
from geniam.rspec.compression import compress_rspec
from geniam.rspec.merge import AggregateOutcome, merge_manifests, split_request
from geniam.rspec.mergecache import CACHEABLE_CHARS, AnswerCache
from geniam.timeutil import parse_time
from geniam.trust.context import CallContext
from geniam.trust.forwarding import Forwarding
from geniam.urn import URN, parse_urn

_T = TypeVar("_T")

CALL_ID_OPTION = "call_id"
UNDO_FIELD = "geniam_undo"
CACHED_OPTION = "cached"
MAX_CALL_ID = 256


@dataclass(frozen=True)
class SliceManagerInfo:
    """
    How the slice manager describes itself.

    @ivar urn: its URN (that of its certificate).
    @ivar url: the URL clients reach its AM API v3 at.
    """

    urn: str
    url: str


@dataclass(frozen=True)
class SliceManagerSettings:
    """
    The slice manager's tunables.

    @ivar peer_timeout: seconds one peer may take to answer one call.
    @ivar deadline: seconds a whole call may take; then it answers with
        what it has.
    @ivar max_concurrency: calls in flight to all peers together.
    @ivar cache_ttl: seconds a merged advertisement is fresh.
    @ivar stale_ttl: seconds past C{cache_ttl} it is still served while
        refreshed (C{None}: as long as C{cache_ttl}).
    @ivar call_id_window: seconds a finished call's answer is kept for repeats.
    @ivar breaker_failures: consecutive failures that open a peer's circuit.
    @ivar breaker_reset: seconds before an open circuit is probed.
    @ivar breaker_max_reset: the longest cool-down after failed probes.
    @ivar hung_after: seconds a call may be in flight before its peer is checked for a hang.
    @ivar probe_timeout: seconds a probe's GetVersion may take (connect and first byte included).
    @ivar probe_interval: seconds from a breaker opening to its first background probe.
    @ivar probe_max_interval: the cap on the doubling interval between background probes.
    @ivar partial_cache_ttl: seconds an advertisement lacking an aggregate is cached.
    @ivar undo_retry: seconds between attempts at a pending undo of a failed Allocate.
    @ivar undo_give_up: seconds after which a pending undo is given up.
    @ivar commit_retry: seconds between attempts at a two-phase Commit that got no answer.
    """

    peer_timeout: float = 30.0
    deadline: float = 60.0
    max_concurrency: int = 512
    cache_ttl: float = 60.0
    stale_ttl: float | None = None
    call_id_window: float = 600.0
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    breaker_max_reset: float = 600.0
    hung_after: float = DEFAULT_HUNG_AFTER
    probe_timeout: float = DEFAULT_PROBE_TIMEOUT
    probe_interval: float = DEFAULT_PROBE_INTERVAL
    probe_max_interval: float = DEFAULT_PROBE_MAX_INTERVAL
    partial_cache_ttl: float = DEFAULT_PARTIAL_TTL
    undo_retry: float = DEFAULT_UNDO_RETRY
    undo_give_up: float = DEFAULT_UNDO_GIVE_UP
    commit_retry: float = DEFAULT_COMMIT_RETRY


@dataclass(frozen=True)
class Mergers:
    """
    The RSpec functions the slice manager uses (L{geniam.rspec.merge} by default).

    @ivar advertisements: C{(outcomes, call, generated) -> XML}; C{None}:
        the slice manager's L{AnswerCache}, which gives what
        L{merge_advertisements} gives.
    @ivar manifests: C{(outcomes, call, generated) -> XML}; C{None}: the
        L{AnswerCache}, as L{merge_manifests}. Manifests are new at every
        call, and the tree merge costs less CPU for them than checking
        each as it arrives.
    @ivar split: C{(request, aggregate URNs) -> {URN: request}}.
    """

    advertisements: Callable[..., str] | None = None
    manifests: Callable[..., str] | None = merge_manifests
    split: Callable[..., dict[str, str]] = split_request


@dataclass
class _Call:
    """One incoming call on its way through the slice manager."""

    method: str
    context: CallContext
    options: dict[str, Any]
    call_id: str
    deadline: float
    forwarded: dict[str, Any] = field(default_factory=dict)

    @property
    def caller(self) -> Any:
        """The TLS client (the caller replay, loop checks and routing key on)."""
        return self.context.peer


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


class SliceManager(SliceTransactionMethods):
    """
    The ten AM API v3 methods and the four transaction methods
    (L{geniam.managers.smtransactions}), forwarded to many peers.

    @ivar records: the peers, in the configured order.
    @ivar fanout: makes the calls.
    @ivar cache: the advertisement cache.
    @ivar replay: remembers answers by C{call_id}.
    @ivar info: the slice manager's URN and URL.
    @ivar answers: each peer's last RSpec, checked, for the merges.
    """

    log = Logger()

    def __init__(
        self,
        peers: Sequence[Peer],
        clock: IReactorTime,
        info: SliceManagerInfo,
        settings: SliceManagerSettings = SliceManagerSettings(),
        mergers: Mergers = Mergers(),
        peer_urns: Mapping[str, str] | None = None,
        threadpool: ThreadPool | None = None,
        reactor: IReactorFromThreads | None = None,
        new_call_id: Callable[[], str] | None = None,
        undo_journal: UndoJournal | None = None,
    ) -> None:
        """
        @param peers: the aggregates and slice managers to forward to.
        @param clock: gives the time; drives timeouts, the cache and the breakers.
        @param info: the slice manager's URN and URL.
        @param settings: timeouts, deadline, bounds.
        @param mergers: the RSpec merge and split functions.
        @param peer_urns: URNs known in advance, by peer URL.
        @param threadpool: where RSpecs are merged, split and compressed;
            inline when C{None}.
        @param reactor: required with C{threadpool}.
        @param new_call_id: makes the C{call_id} of calls that came without one.
        @param undo_journal: where pending undos of failed Allocates are
            kept (in memory only when C{None}).
        """
        if threadpool is not None and reactor is None:
            raise ValueError("a thread pool needs a reactor")
        parse_urn(info.urn)
        self.info = info
        self.settings = settings
        self.mergers = mergers
        self._clock = clock
        self._threadpool = threadpool
        self._reactor = reactor
        self._new_call_id = new_call_id or (lambda: secrets.token_hex(16))
        urns = dict(peer_urns or {})
        self.records = [
            PeerRecord(
                peer,
                CircuitBreaker(
                    clock, settings.breaker_failures, settings.breaker_reset, settings.breaker_max_reset, peer.url
                ),
                urns.get(peer.url),
            )
            for peer in peers
        ]
        self._order = {id(record): index for index, record in enumerate(self.records)}
        self.fanout = FanOut(clock, settings.peer_timeout, settings.max_concurrency)
        self.health = PeerHealth(
            clock,
            self.records,
            settings.hung_after,
            settings.probe_timeout,
            settings.probe_interval,
            settings.probe_max_interval,
            on_alive=self._alive,
        )
        self.fanout.health = self.health
        self.cache = AdvertisementCache(
            clock, settings.cache_ttl, settings.stale_ttl, partial_ttl=settings.partial_cache_ttl
        )
        self.undo = Undoer(
            clock,
            self.fanout,
            self.records,
            undo_journal or UndoJournal(None),
            settings.undo_retry,
            settings.undo_give_up,
            settle=settings.peer_timeout,
            call_timeout=settings.peer_timeout,
        )
        self.replay = CallReplay(clock, settings.call_id_window)
        self.answers = AnswerCache()
        self._forwarding: dict[str, int] = {}
        self._learning: Shared[None] | None = None
        for record in self.records:
            record.breaker.on_change(self._breaker_changed)

    def _breaker_changed(self, state: BreakerState) -> None:
        if state is BreakerState.CLOSED:
            self.cache.drop_partial()

    # --- peers ----------------------------------------------------------

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

    def start(self) -> Deferred[None]:
        """Learn every peer's version; fires when done (failures are remembered, not raised)."""
        return self.learn_versions()

    def start_background(self) -> None:
        """Start retrying pending undos (those of the journal first)."""
        self.undo.start()

    def stop_background(self) -> None:
        """Stop probing and retrying (pending undos stay in the journal)."""
        self.undo.stop()
        self.health.stop()

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

    # --- helpers --------------------------------------------------------

    async def _cpu(self, function: Callable[..., _T], *args: Any) -> _T:
        if self._threadpool is None:
            return function(*args)
        assert self._reactor is not None
        result: _T = await deferToThreadPool(self._reactor, self._threadpool, function, *args)  # type: ignore[arg-type]
        return result

    async def _once(self, method: str, context: CallContext, options: Any, work: Callable[[_Call], Any]) -> dict[str, Any]:
        """Run C{work} for a call, answering repeats of its C{call_id} with the first answer."""
        options = options_struct(options)
        call_id = options.get(CALL_ID_OPTION)
        if call_id is not None and (not isinstance(call_id, str) or len(call_id) > MAX_CALL_ID):
            raise GeniError(GeniCode.BADARGS, f"option call_id must be a string of at most {MAX_CALL_ID} characters")
        given = bool(call_id)
        if not call_id:
            call_id = self._new_call_id()
        call = _Call(method, context, options, call_id, self._clock.seconds() + self.settings.deadline)
        caller = call.caller
        if not given:
            return await self._forwarding_call(call, work)  # type: ignore[no-any-return]
        key = (caller_key(caller), method, call_id)
        if not self.replay.knows(key) and call_id in self._forwarding and self._is_peer(caller):
            raise GeniError(
                GeniCode.REFUSED,
                f"call_id {call_id[:64]!r} is being forwarded by this slice manager already: "
                "the call came back through a loop of slice managers",
            )
        result: dict[str, Any] = await self.replay.run(key, lambda: Deferred.fromCoroutine(self._forwarding_call(call, work)))
        return result

    async def _forwarding_call(self, call: _Call, work: Callable[[_Call], Any]) -> Any:
        self._forwarding[call.call_id] = self._forwarding.get(call.call_id, 0) + 1
        try:
            return await work(call)
        finally:
            left = self._forwarding[call.call_id] - 1
            if left:
                self._forwarding[call.call_id] = left
            else:
                del self._forwarding[call.call_id]

    def _is_peer(self, caller: Any) -> bool:
        urn = caller_urn(caller)
        return any(record.is_urn(urn) for record in self.records)

    def _options_for(self, call: _Call, forwarding: Forwarding, drop: Sequence[str] = ()) -> dict[str, Any]:
        options = forwarding.options(call.options)
        for name in drop:
            options.pop(name, None)
        options[CALL_ID_OPTION] = call.call_id
        return options

    async def _fan(
        self, call: _Call, calls: list[PeerCall], unknown: Sequence[PeerRecord] = (), rspecs: str | None = None
    ) -> list[PeerOutcome]:
        """
        Make C{calls}; with C{rspecs} (C{advertisement} or C{manifest}),
        check each RSpec answered as it arrives, for the merge.
        """
        started = self._clock.seconds()
        taken = None if rspecs is None or self._merger(rspecs) is not None else lambda o: self._take(rspecs, o)
        outcomes = self._in_order(
            list(await self.fanout.run(calls, call.deadline, taken)) + [self._not_known(r) for r in unknown]
        )
        self.log.info(
            "{method} from {caller} to {count} aggregates: {ok} answered with success, {failed} did not, in {secs:.3f} s",
            method=call.method,
            caller=caller_urn(call.caller) or "an unnamed caller",
            count=len(outcomes),
            ok=sum(1 for o in outcomes if o.ok),
            failed=sum(1 for o in outcomes if not o.ok),
            secs=self._clock.seconds() - started,
        )
        return outcomes

    def _merger(self, kind: str) -> Callable[..., str] | None:
        """The custom merge function for C{kind}, or C{None} for the answer cache."""
        return self.mergers.advertisements if kind == "advertisement" else self.mergers.manifests

    def _take(self, kind: str, outcome: PeerOutcome) -> None:
        """Check a small RSpec answer now, while slower peers are awaited (large ones wait for the merge's thread)."""
        if not outcome.ok:
            return
        value = outcome.value
        rspec = value if kind == "advertisement" else value.get("geni_rspec") if isinstance(value, dict) else None
        if isinstance(rspec, str) and len(rspec) <= CACHEABLE_CHARS:
            self.answers.take(outcome.name, kind, rspec)

    async def _merged(self, kind: str, outcomes: list[AggregateOutcome], call: str) -> str:
        """The merged RSpec of C{kind}, in the thread pool."""
        merger = self._merger(kind)
        if merger is not None:
            return await self._cpu(merger, outcomes, call, self._clock.seconds())
        return await self._cpu(self.answers.merge, kind, outcomes, call, self._clock.seconds())

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

    @staticmethod
    def _shaped(outcomes: list[PeerOutcome], check: Callable[[Any], bool], what: str) -> list[PeerOutcome]:
        """Turn successes whose value is not shaped as C{what} into errors."""
        fixed = []
        for outcome in outcomes:
            if outcome.ok and not check(outcome.value):
                outcome = PeerOutcome(
                    outcome.record,
                    ERROR,
                    outcome.elapsed,
                    None,
                    int(GeniCode.RPCERROR),
                    f"malformed reply: the value is not {what}",
                )
            fixed.append(outcome)
        return fixed

    # --- GetVersion -----------------------------------------------------

    async def GetVersion(self, context: CallContext, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """Describe this slice manager and its peers; not forwarded, needs no credential."""
        peers: dict[str, str] = {}
        states = []
        for record in self.records:
            peers[record.urn or record.url] = record.url
            state: dict[str, Any] = {"url": record.url, "state": record.breaker.state.value}
            if record.urn:
                state["urn"] = record.urn
            if record.version_error is not None:
                state["error"] = record.version_error.output
            states.append(state)
        return get_version_struct(
            self.info.url, self.info.urn, "geni_many", interface="slicemgr", peers=peers, geniam_peers=states,
            **{TRANSACTIONS_EXTENSION: {"methods": list(TRANSACTION_METHODS)}},
        )

    # --- ListResources --------------------------------------------------

    async def ListResources(self, context: CallContext, options: dict[str, Any]) -> dict[str, Any]:
        """The merged advertisement of every peer (cached unless C{cached} is false)."""
        return await self._once("ListResources", context, options, lambda call: self._list_resources(call))

    async def _list_resources(self, call: _Call) -> dict[str, Any]:
        options = call.options
        if "geni_slice_urn" in options:
            raise GeniError(GeniCode.BADARGS, "geni_slice_urn is not an AM API v3 option; use Describe")
        rspec_version(options, SUPPORTED_RSPECS)
        compressed = flag(options, "geni_compressed")
        use_cache = flag(options, CACHED_OPTION, True)
        forwarding = await call.context.forwarding_for_resources(options)
        callable_, unknown, excluded = self._partition(call.caller)
        key = ad_cache_key(options, [r.key for r in excluded])
        forwarded = self._options_for(call, forwarding, drop=("geni_compressed",))

        def fetch() -> Deferred[Fetched]:
            return Deferred.fromCoroutine(self._fetch_advertisement(call, forwarding, forwarded, callable_, unknown))

        if use_cache:
            cached = await self.cache.get(key, fetch)
        else:
            cached = await self.cache.refresh(key, fetch)
        value = await self._cpu(compress_rspec, cached.value) if compressed else cached.value
        struct = success_struct(value)
        struct["geniam_cache"] = {"hit": cached.hit, "age": round(cached.age, 3), "stale": cached.stale}
        if cached.details is not None:
            struct[STATISTICS_FIELD] = cached.details
        if cached.missing:
            struct["output"] = "lacks the resources of aggregates that did not answer: " + ", ".join(cached.missing)
        return struct

    async def _fetch_advertisement(
        self,
        call: _Call,
        forwarding: Forwarding,
        options: dict[str, Any],
        records: list[PeerRecord],
        unknown: list[PeerRecord],
    ) -> Fetched:
        calls = [PeerCall(r, "ListResources", (list(forwarding.credentials), options)) for r in records]
        outcomes = self._shaped(
            await self._fan(call, calls, unknown, "advertisement"), lambda v: isinstance(v, str), "an RSpec string"
        )
        if outcomes and not any(o.ok for o in outcomes):
            code, output = rollup(outcomes, False, False)
            raise GeniError(known_code(code), f"no aggregate listed its resources: {output}")
        rspecs = [o.value if o.ok else None for o in outcomes]
        merged = await self._merged("advertisement", rspec_outcomes(outcomes, rspecs), "ListResources")
        missing = tuple(o.name for o in outcomes if not o.ok)
        return Fetched(merged, missing, statistics("ListResources", outcomes))

    # --- Describe, Provision, Status ------------------------------------

    async def Describe(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The merged manifest and sliver states of a slice or some of its slivers."""
        return await self._once("Describe", context, options, lambda call: self._manifest_call(call, urns))

    async def Provision(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Provision at every aggregate concerned; the merged manifest of what was provisioned."""
        return await self._once("Provision", context, options, lambda call: self._manifest_call(call, urns))

    async def _manifest_call(self, call: _Call, urns: Any) -> dict[str, Any]:
        rspec_version(call.options, SUPPORTED_RSPECS)
        compressed = call.method == "Describe" and flag(call.options, "geni_compressed")
        # A read answers with what the reachable aggregates said; a change keeps all or nothing.
        best_effort = call.method == "Describe" or flag(call.options, "geni_best_effort")
        target = target_urns(urns)
        slice_urn = target.slice_urn
        forwarding = await call.context.forwarding_for_slice(call.method, slice_urn, call.options)
        plan, unknown = self._route(call, target)
        options = self._options_for(call, forwarding, drop=("geni_compressed",))
        calls = [PeerCall(r, call.method, (own, list(forwarding.credentials), options)) for r, own in plan]
        try:
            outcomes = await self._fan(call, calls, unknown, "manifest")
        finally:
            if call.method == "Provision":
                self.cache.invalidate()
        outcomes = self._shaped(outcomes, _manifest_shaped, "a struct with geni_rspec and geni_slivers")
        whole = slice_urn is not None
        code, output = rollup(outcomes, whole, best_effort)
        rspecs = [o.value["geni_rspec"] if o.ok else None for o in outcomes]
        manifest = await self._merged("manifest", rspec_outcomes(outcomes, rspecs), call.method)
        if compressed:
            manifest = await self._cpu(compress_rspec, manifest)
        value = {
            "geni_rspec": manifest,
            "geni_urn": first_member(outcomes, "geni_urn", slice_urn or forwarding.slice_urn or ""),
            "geni_slivers": concatenated(outcomes, "geni_slivers"),
        }
        return result_struct(call.method, outcomes, value, code, output)

    async def Status(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """C{geni_urn} and the sliver states from every aggregate concerned."""
        return await self._once("Status", context, options, lambda call: self._status(call, urns))

    async def _status(self, call: _Call, urns: Any) -> dict[str, Any]:
        target = target_urns(urns)
        slice_urn = target.slice_urn
        forwarding = await call.context.forwarding_for_slice("Status", slice_urn, call.options)
        plan, unknown = self._route(call, target)
        options = self._options_for(call, forwarding)
        calls = [PeerCall(r, "Status", (own, list(forwarding.credentials), options)) for r, own in plan]
        outcomes = self._shaped(
            await self._fan(call, calls, unknown),
            lambda v: isinstance(v, dict) and isinstance(v.get("geni_slivers"), list),
            "a struct with geni_slivers",
        )
        code, output = rollup(outcomes, slice_urn is not None, True)
        value = {
            "geni_urn": first_member(outcomes, "geni_urn", slice_urn or forwarding.slice_urn or ""),
            "geni_slivers": concatenated(outcomes, "geni_slivers"),
        }
        return result_struct("Status", outcomes, value, code, output)

    # --- Allocate -------------------------------------------------------

    async def Allocate(
        self, context: CallContext, slice_urn: Any, rspec: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Send each aggregate its part of the request; the merged manifest of the new slivers."""
        return await self._once(
            "Allocate", context, options, lambda call: self._allocate(call, slice_urn, rspec)
        )

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
        # A two-phase allocation whose Begins failed left only transactions, aborted already: nothing to undo.
        undoable = True
        try:
            if path == TWO_PHASE:
                phases = await TwoPhase(
                    self._clock, lambda calls: Deferred.fromCoroutine(self._fan_manifests(call, calls)),
                    lambda outcomes: rollup(outcomes, False, False), self.settings.commit_retry,
                ).run(slice_urn, credentials, pairs, options, call.deadline)
                outcomes, code, output, undoable = phases.outcomes, phases.code, phases.output, phases.committed
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
        struct = await self._manifest_struct("Allocate", outcomes, slice_urn, code, output)
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

    # --- Renew, PerformOperationalAction, Delete, Shutdown --------------

    async def Renew(
        self, context: CallContext, urns: Any, expiration_time: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Renew at every aggregate concerned; the sliver lists joined, codes rolled up."""
        parse_time(expiration_time)
        return await self._once(
            "Renew", context, options, lambda call: self._list_call(call, urns, (expiration_time,))
        )

    async def PerformOperationalAction(
        self, context: CallContext, urns: Any, action: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Perform the action at every aggregate concerned; the sliver lists joined."""
        if not isinstance(action, str) or not action:
            raise GeniError(GeniCode.BADARGS, "action must be a non-empty string")
        return await self._once(
            "PerformOperationalAction", context, options, lambda call: self._list_call(call, urns, (action,))
        )

    async def Delete(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Delete at every aggregate concerned; the lists of deleted slivers joined."""
        return await self._once("Delete", context, options, lambda call: self._list_call(call, urns, ()))

    async def _list_call(self, call: _Call, urns: Any, extra: tuple[Any, ...]) -> dict[str, Any]:
        target = target_urns(urns)
        slice_urn = target.slice_urn
        forwarding = await call.context.forwarding_for_slice(call.method, slice_urn, call.options)
        plan, unknown = self._route(call, target)
        options = self._options_for(call, forwarding)
        calls = [PeerCall(r, call.method, (own, list(forwarding.credentials), *extra, options)) for r, own in plan]
        try:
            outcomes = await self._fan(call, calls, unknown)
        finally:
            if call.method == "Delete":
                self.cache.invalidate()
        outcomes = self._shaped(outcomes, lambda v: isinstance(v, list), "a list of slivers")
        code, output = rollup(outcomes, slice_urn is not None, flag(call.options, "geni_best_effort"))
        return result_struct(call.method, outcomes, concatenated(outcomes, None), code, output)

    async def Shutdown(self, context: CallContext, slice_urn: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Shut the slice down at every aggregate; C{true} when all did."""
        return await self._once("Shutdown", context, options, lambda call: self._shutdown(call, slice_urn))

    async def _shutdown(self, call: _Call, slice_urn: Any) -> dict[str, Any]:
        slice_urn = str(parse_urn(slice_urn, "slice"))
        forwarding = await call.context.forwarding_for_slice("Shutdown", slice_urn, call.options)
        callable_, unknown, _ = self._partition(call.caller)
        options = self._options_for(call, forwarding)
        calls = [PeerCall(r, "Shutdown", (slice_urn, list(forwarding.credentials), options)) for r in callable_]
        outcomes = await self._fan(call, calls, unknown)
        code, output = rollup(outcomes, True, False)
        value = code == GeniCode.SUCCESS and all(o.value is True for o in outcomes if o.ok)
        return result_struct("Shutdown", outcomes, value, code, output)


def _manifest_shaped(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("geni_rspec"), str)
        and isinstance(value.get("geni_slivers", []), list)
    )


def _rolled_back(outcome: PeerOutcome) -> PeerOutcome:
    """A successful Allocate whose slivers are being released: reported as an error."""
    return undone(outcome, "allocated, then undone because another aggregate failed")
