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
  - C{geni_best_effort} (Allocate): keep the parts that succeeded;
  - C{geniam_transaction} and C{geniam_transactions} (CommitTransaction,
    AbortTransaction): the transaction named, by the slice manager's
    identifier or the aggregates' own (L{geniam.managers.smtransactions}).
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

from geniam.errors import GeniCode, GeniError
from geniam.managers.adcache import DEFAULT_PARTIAL_TTL, AdvertisementCache
from geniam.managers.arguments import flag, options_struct, target_urns
from geniam.managers.breaker import BreakerState, CircuitBreaker
from geniam.managers.fanout import ERROR, FanOut, PeerCall, PeerOutcome
from geniam.managers.fedtransactions import FederatedTransactions
from geniam.managers.health import (
    DEFAULT_HUNG_AFTER,
    DEFAULT_PROBE_INTERVAL,
    DEFAULT_PROBE_MAX_INTERVAL,
    DEFAULT_PROBE_TIMEOUT,
    PeerHealth,
)
from geniam.managers.peers import Peer, PeerRecord
from geniam.managers.replay import CallReplay
from geniam.managers.rollup import concatenated, result_struct, rollup
from geniam.managers.shared import Shared
from geniam.managers.smallocate import UNDO_FIELD, SliceAllocateMethods
from geniam.managers.smpeers import CALL_ID_OPTION, SlicePeerMethods, caller_key, caller_urn, known_code
from geniam.managers.smreads import CACHED_OPTION, SliceReadMethods
from geniam.managers.smtransactions import SliceTransactionMethods
from geniam.managers.transactionapi import TRANSACTION_METHODS, TRANSACTIONS_EXTENSION
from geniam.managers.twophase import DEFAULT_COMMIT_RETRY
from geniam.managers.undo import DEFAULT_UNDO_GIVE_UP, DEFAULT_UNDO_RETRY, Undoer, UndoJournal
from geniam.managers.version import get_version_struct
from geniam.rspec.merge import AggregateOutcome, merge_manifests
from geniam.rspec.mergecache import CACHEABLE_CHARS, AnswerCache
from geniam.rspec.split import split_request
from geniam.timeutil import parse_time
from geniam.trust.context import CallContext
from geniam.trust.forwarding import Forwarding
from geniam.urn import parse_urn

_T = TypeVar("_T")

MAX_CALL_ID = 256

__all__ = [
    "CACHED_OPTION",
    "CALL_ID_OPTION",
    "MAX_CALL_ID",
    "UNDO_FIELD",
    "Mergers",
    "SliceManager",
    "SliceManagerInfo",
    "SliceManagerSettings",
    "caller_key",
    "caller_urn",
    "known_code",
]


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



class SliceManager(SliceAllocateMethods, SliceReadMethods, SlicePeerMethods, SliceTransactionMethods):
    """
    The ten AM API v3 methods and the four transaction methods
    (L{geniam.managers.smtransactions}), forwarded to many peers.

    The work of the reads is in L{geniam.managers.smreads}, that of
    Allocate in L{geniam.managers.smallocate}, the peer bookkeeping and
    routing in L{geniam.managers.smpeers}.

    @ivar records: the peers, in the configured order.
    @ivar fanout: makes the calls.
    @ivar cache: the advertisement cache.
    @ivar replay: remembers answers by C{call_id}.
    @ivar info: the slice manager's URN and URL.
    @ivar answers: each peer's last RSpec, checked, for the merges.
    @ivar federated: the identifiers of clients' transactions across aggregates.
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
        self.federated = FederatedTransactions(clock)
        self.answers = AnswerCache()
        self._forwarding: dict[str, int] = {}
        self._learning: Shared[None] | None = None
        for record in self.records:
            record.breaker.on_change(self._breaker_changed)

    def _breaker_changed(self, state: BreakerState) -> None:
        if state is BreakerState.CLOSED:
            self.cache.drop_partial()

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

    # --- Describe, Provision, Status ------------------------------------

    async def Describe(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """The merged manifest and sliver states of a slice or some of its slivers."""
        return await self._once("Describe", context, options, lambda call: self._manifest_call(call, urns))

    async def Provision(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """Provision at every aggregate concerned; the merged manifest of what was provisioned."""
        return await self._once("Provision", context, options, lambda call: self._manifest_call(call, urns))

    async def Status(self, context: CallContext, urns: Any, options: dict[str, Any]) -> dict[str, Any]:
        """C{geni_urn} and the sliver states from every aggregate concerned."""
        return await self._once("Status", context, options, lambda call: self._status(call, urns))

    # --- Allocate -------------------------------------------------------

    async def Allocate(
        self, context: CallContext, slice_urn: Any, rspec: Any, options: dict[str, Any]
    ) -> dict[str, Any]:
        """Send each aggregate its part of the request; the merged manifest of the new slivers."""
        return await self._once(
            "Allocate", context, options, lambda call: self._allocate(call, slice_urn, rspec)
        )

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
