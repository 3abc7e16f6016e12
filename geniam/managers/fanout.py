# -*- test-case-name: tests.managers.test_fanout -*-
"""
Calling many peers at once, each with a timeout, all within a deadline.

L{FanOut.run} starts every call at once (as far as the shared bound on
calls in flight allows; calls beyond it wait for a free slot) and fires
with one L{PeerOutcome} per call, in order, by the deadline at the
latest: calls still running then are cancelled (which aborts their HTTP
requests) and reported as timed out. It never fails for a peer's sake.

Each call also has its own timeout, and goes through its peer's
L{CircuitBreaker}: a peer whose circuit is open is not called and is
reported as unavailable. With a L{PeerHealth}, calls in flight are
watched: a call cut short because its peer was found hung is reported as
timed out at once.

A call costs little besides the peer's own Deferred: it is driven by
callbacks on what it waits for (no coroutine of its own), the peer
timeouts of a run share one timer (set for the oldest call in flight),
the hang watch has one timer for every peer, and the outcomes are
gathered by the calls themselves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.errors import GeniCode, GeniError
from geniam.managers.health import PeerHealth
from geniam.managers.peers import PeerRecord
from geniam.protocols.peer import PeerRequestError, PeerTimeout

DEFAULT_PEER_TIMEOUT = 30.0
"""Default seconds one peer may take to answer one call."""

DEFAULT_MAX_CONCURRENCY = 512
"""Default bound on calls in flight to all peers together."""

SUCCESS = "success"
ERROR = "error"
TIMEOUT = "timeout"

_REASON_CHARS = 300


def _short(text: object) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= _REASON_CHARS else words[: _REASON_CHARS - 3] + "..."


@dataclass(frozen=True)
class PeerCall:
    """
    One call to make.

    @ivar record: the peer.
    @ivar method: the AM API method.
    @ivar params: its parameters.
    """

    record: PeerRecord
    method: str
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class PeerOutcome:
    """
    How one call went.

    @ivar record: the peer called.
    @ivar status: C{success} (a struct with C{geni_code} 0), C{error} (a
        struct with another code, or a failed call) or C{timeout}.
    @ivar elapsed: seconds from the start of the fan-out to the outcome.
    @ivar struct: the GENI return struct the peer answered, if it answered.
    @ivar code: the C{geni_code} of a call that did not succeed.
    @ivar reason: a short reason for a call that did not succeed.
    @ivar called: whether the call was made (not refused by the breaker or dropped in the queue).
    """

    record: PeerRecord
    status: str
    elapsed: float
    struct: dict[str, Any] | None = None
    code: int | None = None
    reason: str | None = None
    called: bool = True
    ok: bool = field(init=False, repr=False, compare=False)
    """Whether the peer answered with success."""
    value: Any = field(init=False, repr=False, compare=False)
    """The C{value} of the struct the peer answered, or C{None}."""

    def __post_init__(self) -> None:
        # Read many times per outcome by the merge and the rollup: worked out once.
        object.__setattr__(self, "ok", self.status == SUCCESS)
        object.__setattr__(self, "value", self.struct.get("value") if self.struct is not None else None)

    @property
    def name(self) -> str:
        """The peer's name for statistics (URN when known, else URL)."""
        return self.record.name

    def describe(self) -> str:
        """C{name: reason} for messages."""
        code = f"{GeniCode(self.code).name} " if self.code is not None and self.code in GeniCode._value2member_map_ else ""
        return f"{self.name}: {code}{self.reason or self.status}"


def outcome_of_struct(record: PeerRecord, struct: Any, elapsed: float) -> PeerOutcome:
    """Classify what a peer answered."""
    if not isinstance(struct, dict) or not isinstance(struct.get("code"), dict):
        return PeerOutcome(record, ERROR, elapsed, None, int(GeniCode.RPCERROR), "the reply is not a GENI return struct")
    code = struct["code"].get("geni_code")
    if code == 0:
        return PeerOutcome(record, SUCCESS, elapsed, struct)
    if isinstance(code, bool) or not isinstance(code, int):
        return PeerOutcome(record, ERROR, elapsed, None, int(GeniCode.RPCERROR), "the reply has no integer geni_code")
    output = struct.get("output")
    return PeerOutcome(record, ERROR, elapsed, struct, code, _short(output) if output else f"geni_code {code}")


@dataclass
class _Run:
    start: float
    deadline: float | None
    passed: bool = False
    cancelled: bool = False
    # What each call still running waits for (a connection slot or its peer's answer), by index.
    waiting: dict[int, Deferred[Any]] = field(default_factory=dict)
    # Calls in flight by start time, the one timer for their peer timeouts, and the calls it cancelled.
    started: deque[tuple[float, Deferred[Any]]] = field(default_factory=deque)
    timeouts: IDelayedCall | None = None
    timed_out: set[int] = field(default_factory=set)
    # Each call's (succeeded, outcome or failure), the calls still running, and what fires when none is.
    results: list[tuple[bool, Any]] = field(default_factory=list)
    left: int = 0
    done: Deferred[None] = field(default_factory=Deferred)


class FanOut:
    """
    Runs calls to peers concurrently.

    @ivar peer_timeout: seconds one call may take.
    @ivar max_concurrency: the bound on calls in flight across every run.
    @ivar health: watches calls in flight for hung peers, if set.
    @ivar observer: told C{observer(method, outcome)} of every call's
        outcome once a run ends, if set (metrics).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        peer_timeout: float = DEFAULT_PEER_TIMEOUT,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    ) -> None:
        if peer_timeout <= 0:
            raise ValueError("peer_timeout must be positive")
        self._clock = clock
        self.peer_timeout = peer_timeout
        self.max_concurrency = max_concurrency
        self._slots = DeferredSemaphore(max_concurrency)
        self.health: PeerHealth | None = None
        self.observer: Callable[[str, PeerOutcome], None] | None = None

    @property
    def in_flight(self) -> int:
        """Calls in flight now."""
        return self._slots.limit - self._slots.tokens

    @property
    def queued(self) -> int:
        """Calls waiting for a free slot now."""
        return len(self._slots.waiting)

    def run(
        self,
        calls: Sequence[PeerCall],
        deadline: float | None = None,
        on_outcome: Callable[[PeerOutcome], object] | None = None,
    ) -> Deferred[list[PeerOutcome]]:
        """
        Make every call; fire with their outcomes, in order.

        @param deadline: the clock time by which to fire; calls still
            running then are cancelled and reported as timed out.
        @param on_outcome: called with each outcome as soon as it is known
            (while other calls are still running); what it raises is logged.
        @return: a Deferred that never fails for a peer's sake;
            cancelling it cancels every call.
        """
        return Deferred.fromCoroutine(self._run(list(calls), deadline, on_outcome))

    async def _run(
        self, calls: list[PeerCall], deadline: float | None, on_outcome: Callable[[PeerOutcome], object] | None = None
    ) -> list[PeerOutcome]:
        run = _Run(self._clock.seconds(), deadline)
        run.results = [(False, None)] * len(calls)
        run.left = len(calls)
        run.done = Deferred(lambda _: self._cancel_run(run))
        if not calls:
            run.done.callback(None)
        for index, call in enumerate(calls):
            _OneCall(self, run, index, call, on_outcome).start()
        timer: IDelayedCall | None = None
        if deadline is not None and run.left:
            timer = self._clock.callLater(max(0.0, deadline - run.start), self._deadline_passed, run)
        try:
            await run.done
        finally:
            if timer is not None and timer.active():
                timer.cancel()
            if run.timeouts is not None:
                run.timeouts.cancel()
                run.timeouts = None
        results = run.results
        outcomes: list[PeerOutcome] = []
        cancelled = False
        for call, (ok, value) in zip(calls, results):
            if ok:
                outcomes.append(value)
                continue
            failure: Failure = value  # type: ignore[assignment]
            if failure.check(CancelledError):
                cancelled = True
            else:
                self.log.failure("calling {peer} failed unexpectedly", failure, peer=call.record.url)
            outcomes.append(
                PeerOutcome(call.record, ERROR, self._elapsed(run), None, int(GeniCode.SERVERERROR), "internal error")
            )
        if cancelled:
            raise CancelledError()
        if self.observer is not None:
            for call, outcome in zip(calls, outcomes):
                self.observer(call.method, outcome)
        return outcomes

    def _cancel_run(self, run: _Run) -> None:
        run.cancelled = True
        self._cancel_all(run)

    @staticmethod
    def _cancel_all(run: _Run) -> None:
        for d in list(run.waiting.values()):
            d.cancel()  # also reaches a fired Deferred waiting on another

    def _deadline_passed(self, run: _Run) -> None:
        run.passed = True
        self._cancel_all(run)

    def _elapsed(self, run: _Run) -> float:
        return max(0.0, self._clock.seconds() - run.start)

    def _timed_out(self, record: PeerRecord, run: _Run, reason: str, called: bool = True) -> PeerOutcome:
        return PeerOutcome(record, TIMEOUT, self._elapsed(run), None, int(GeniCode.TIMEDOUT), reason, called)

    def _late(self, record: PeerRecord, run: _Run, called: bool) -> PeerOutcome:
        allowed = (run.deadline or run.start) - run.start
        if called:
            reason = f"no answer before the deadline ({allowed:g} s); the call was cancelled"
        else:
            reason = f"not called: no free connection slot before the deadline ({allowed:g} s)"
        return self._timed_out(record, run, reason, called)

    def _peer_timed_out(self, record: PeerRecord, run: _Run) -> PeerOutcome:
        record.breaker.record_failure()
        return self._timed_out(
            record, run, f"no answer within the peer timeout ({self.peer_timeout:g} s); the call was cancelled"
        )

    def _watch_timeout(self, run: _Run, d: Deferred[Any]) -> None:
        """Start the peer timeout of C{d}: one timer per run serves every call in it, oldest first."""
        now = self._clock.seconds()
        run.started.append((now, d))
        if run.timeouts is None:
            run.timeouts = self._clock.callLater(self.peer_timeout, self._time_out, run)

    def _time_out(self, run: _Run) -> None:
        """Cancel the calls of C{run} that reached the peer timeout; wait for the next one due."""
        run.timeouts = None
        now = self._clock.seconds()
        started = run.started
        due: list[Deferred[Any]] = []
        while started:
            began, d = started[0]
            if d.called:
                started.popleft()
                continue
            if began + self.peer_timeout > now:
                run.timeouts = self._clock.callLater(began + self.peer_timeout - now, self._time_out, run)
                break
            started.popleft()
            due.append(d)
        # Cancelled once the timer is set: a cancelled call frees a slot, which may start a call that needs the timer.
        for d in due:
            run.timed_out.add(id(d))
            d.cancel()


class _OneCall:
    """
    One call of a run, driven by callbacks on what it waits for (a slot,
    then the peer's answer): cheaper than a coroutine per call when a run
    makes hundreds of them. Its outcome, or the failure that ended it, goes
    to the run's results; the last call of a run ends it.
    """

    __slots__ = ("fan", "run", "index", "call", "on_outcome", "token", "d")

    def __init__(
        self, fan: FanOut, run: _Run, index: int, call: PeerCall, on_outcome: Callable[[PeerOutcome], object] | None
    ) -> None:
        self.fan = fan
        self.run = run
        self.index = index
        self.call = call
        self.on_outcome = on_outcome
        self.token: int | None = None
        self.d: Deferred[Any] | None = None

    def start(self) -> None:
        """Go through the breaker and take a connection slot (now if one is free), then call."""
        try:
            breaker = self.call.record.breaker
            if not breaker.allow():
                self._done(
                    PeerOutcome(
                        self.call.record, ERROR, self.fan._elapsed(self.run), None, int(GeniCode.UNAVAILABLE),
                        breaker.describe(), called=False,
                    )
                )
                return
            slots = self.fan._slots
            if slots.tokens > 0 and not slots.waiting:
                slots.tokens -= 1  # a free slot, taken without a Deferred (as acquire() would)
                self._call()
                return
            waiting = slots.acquire()
            self.run.waiting[self.index] = waiting
            waiting.addCallbacks(self._slot_taken, self._no_slot)
        except Exception:
            self._broken(Failure())

    def _slot_taken(self, _: object) -> None:
        try:
            self.run.waiting.pop(self.index, None)
            if self.run.passed or self.run.cancelled:
                self.fan._slots.release()
                self.call.record.breaker.release()
                if self.run.cancelled:
                    self._broken(Failure(CancelledError()))
                else:
                    self._done(self.fan._late(self.call.record, self.run, called=False))
                return
            self._call()
        except Exception:
            self._broken(Failure())

    def _no_slot(self, failure: Failure) -> None:
        try:
            self.run.waiting.pop(self.index, None)
            if failure.check(CancelledError):
                self.call.record.breaker.release()
                if self.run.passed:
                    self._done(self.fan._late(self.call.record, self.run, called=False))
                    return
            self._broken(failure)
        except Exception:
            self._broken(Failure())

    def _call(self) -> None:
        """Call the peer (a slot is held); what it answers or raises, now or later, ends the call."""
        fan, record = self.fan, self.call.record
        try:
            d = record.peer.call(self.call.method, *self.call.params)
        except Exception:
            self._failed(Failure())
            return
        self.d = d
        try:
            if not d.called:
                fan._watch_timeout(self.run, d)
            if fan.health is not None:
                self.token = fan.health.started(record, d)
        except Exception:
            # The call is given up: it must not run on outside the bound on calls in flight.
            failure = Failure()
            d.addErrback(lambda _: None)
            d.cancel()
            self._failed(failure)
            return
        # Also a Deferred already fired but waiting on another, which the deadline or a cancel must reach.
        self.run.waiting[self.index] = d
        d.addCallbacks(self._answered, self._failed)

    def _over(self) -> None:
        """The peer's call is over: free its slot, stop watching it."""
        self.run.waiting.pop(self.index, None)
        self.fan._slots.release()
        if self.token is not None and self.fan.health is not None:
            self.fan.health.ended(self.call.record, self.token)

    def _answered(self, struct: Any) -> None:
        try:
            self._over()
            record = self.call.record
            record.breaker.record_success()
            self._done(outcome_of_struct(record, struct, self.fan._elapsed(self.run)))
        except Exception:
            self._broken(Failure())

    def _failed(self, failure: Failure) -> None:
        try:
            try:
                # The peer is charged before its slot goes to the next call, whose answer may come at once.
                outcome = self._failure_outcome(failure)
            finally:
                self._over()
        except Exception:
            self._broken(Failure())
            return
        if outcome is None:
            self._broken(failure)
        else:
            self._done(outcome)

    def _failure_outcome(self, failure: Failure) -> PeerOutcome | None:
        """What a failed call means for its peer; C{None} when the whole run was cancelled."""
        fan, run, record = self.fan, self.run, self.call.record
        breaker = record.breaker
        e = failure.value
        if isinstance(e, CancelledError):
            d = self.d
            if d is not None and id(d) in run.timed_out:
                run.timed_out.discard(id(d))
                return fan._peer_timed_out(record, run)
            if self.token is not None and fan.health is not None and fan.health.was_cut(self.token):
                return fan._timed_out(record, run, f"cut short: circuit opened {breaker.reason}")
            if run.passed:
                breaker.record_failure()
                return fan._late(record, run, called=True)
            breaker.release()
            return None
        if isinstance(e, PeerTimeout):
            return fan._peer_timed_out(record, run)
        if isinstance(e, PeerRequestError):
            breaker.release()
            return PeerOutcome(record, ERROR, fan._elapsed(run), None, int(e.code), _short(e.reason))
        if isinstance(e, GeniError):
            breaker.record_failure()
            reason = getattr(e, "reason", None) or e.output
            return PeerOutcome(record, ERROR, fan._elapsed(run), None, int(e.code), _short(reason))
        breaker.record_failure()
        fan.log.failure("calling {method} at {peer} failed unexpectedly", failure, method=self.call.method, peer=record.url)
        return PeerOutcome(
            record, ERROR, fan._elapsed(run), None, int(GeniCode.RPCERROR), f"unexpected failure: {type(e).__name__}"
        )

    def _done(self, outcome: PeerOutcome) -> None:
        if self.on_outcome is not None:
            try:
                self.on_outcome(outcome)
            except Exception:
                self.fan.log.failure("taking in the answer of {peer} failed", peer=outcome.record.url)
        self._end((True, outcome))

    def _broken(self, failure: Failure) -> None:
        self._end((False, failure))

    def _end(self, result: tuple[bool, Any]) -> None:
        run = self.run
        run.results[self.index] = result
        run.left -= 1
        if run.left == 0 and not run.done.called:
            run.done.callback(None)
