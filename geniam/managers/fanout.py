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

A call costs little besides the peer's own Deferred: the peer timeouts
of a run share one timer (set for the oldest call in flight), the hang
watch has one timer for every peer, and the outcomes are gathered by
the calls themselves.
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
    calls: list[Deferred[None]] = field(default_factory=list)
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

    async def _gathered(
        self, index: int, call: PeerCall, run: _Run, on_outcome: Callable[[PeerOutcome], object] | None
    ) -> None:
        """Make one call of C{run}; its outcome (or failure) goes to C{run.results}, and the last one ends the run."""
        try:
            outcome = await self._one(call, run)
        except Exception:
            run.results[index] = (False, Failure())
        else:
            if on_outcome is not None:
                try:
                    on_outcome(outcome)
                except Exception:
                    self.log.failure("taking in the answer of {peer} failed", peer=outcome.record.url)
            run.results[index] = (True, outcome)
        run.left -= 1
        if run.left == 0 and not run.done.called:
            run.done.callback(None)

    async def _run(
        self, calls: list[PeerCall], deadline: float | None, on_outcome: Callable[[PeerOutcome], object] | None = None
    ) -> list[PeerOutcome]:
        run = _Run(self._clock.seconds(), deadline)
        run.results = [(False, None)] * len(calls)
        run.left = len(calls)
        run.done = Deferred(lambda _: self._cancel_all(run))
        if not calls:
            run.done.callback(None)
        run.calls = [Deferred.fromCoroutine(self._gathered(i, call, run, on_outcome)) for i, call in enumerate(calls)]
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

    @staticmethod
    def _cancel_all(run: _Run) -> None:
        for d in run.calls:
            if not d.called:
                d.cancel()

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
        while started:
            began, d = started[0]
            if d.called:
                started.popleft()
                continue
            if began + self.peer_timeout > now:
                run.timeouts = self._clock.callLater(began + self.peer_timeout - now, self._time_out, run)
                return
            started.popleft()
            run.timed_out.add(id(d))
            d.cancel()

    async def _one(self, call: PeerCall, run: _Run) -> PeerOutcome:
        record = call.record
        breaker = record.breaker
        if not breaker.allow():
            return PeerOutcome(
                record, ERROR, self._elapsed(run), None, int(GeniCode.UNAVAILABLE), breaker.describe(), called=False
            )
        slots = self._slots
        try:
            if slots.tokens > 0 and not slots.waiting:
                slots.tokens -= 1  # a free slot, taken without a Deferred (as acquire() would)
            else:
                await slots.acquire()
        except CancelledError:
            breaker.release()
            if run.passed:
                return self._late(record, run, called=False)
            raise
        if run.passed:
            self._slots.release()
            breaker.release()
            return self._late(record, run, called=False)
        token: int | None = None
        d: Deferred[Any] | None = None
        try:
            d = record.peer.call(call.method, *call.params)
            if not d.called:
                self._watch_timeout(run, d)
            if self.health is not None:
                token = self.health.started(record, d)
            struct = await d
        except CancelledError:
            if d is not None and id(d) in run.timed_out:
                run.timed_out.discard(id(d))
                return self._peer_timed_out(record, run)
            if token is not None and self.health is not None and self.health.was_cut(token):
                return self._timed_out(record, run, f"cut short: circuit opened {record.breaker.reason}")
            if run.passed:
                breaker.record_failure()
                return self._late(record, run, called=True)
            breaker.release()
            raise
        except PeerTimeout:
            return self._peer_timed_out(record, run)
        except PeerRequestError as e:
            breaker.release()
            return PeerOutcome(record, ERROR, self._elapsed(run), None, int(e.code), _short(e.reason))
        except GeniError as e:
            breaker.record_failure()
            reason = getattr(e, "reason", None) or e.output
            return PeerOutcome(record, ERROR, self._elapsed(run), None, int(e.code), _short(reason))
        except Exception as e:
            breaker.record_failure()
            self.log.failure("calling {method} at {peer} failed unexpectedly", method=call.method, peer=record.url)
            return PeerOutcome(
                record, ERROR, self._elapsed(run), None, int(GeniCode.RPCERROR), f"unexpected failure: {type(e).__name__}"
            )
        finally:
            self._slots.release()
            if token is not None and self.health is not None:
                self.health.ended(record, token)
        breaker.record_success()
        return outcome_of_struct(record, struct, self._elapsed(run))
