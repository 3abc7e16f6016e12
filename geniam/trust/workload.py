# -*- test-case-name: tests.trust.test_hostile_chains,tests.trust.test_verifier -*-
"""
Running credential verification off the reactor, fairly and within a deadline.

L{VerificationRunner} runs verification work in a bounded thread pool
(or inline, when there is none) with three guards, so that one hostile
caller cannot take the verifier from everybody else:

    - every piece of work gets a L{Deadline}: whoever waits can abandon
      it, and the work stops at its next check;
    - each caller (keyed by its certificate's fingerprint) has at most
      C{max_per_caller} pieces of work in the pool at once, the rest wait
      their turn, so one caller cannot occupy every thread;
    - L{VerificationRunner.stop} abandons all work in flight and refuses
      new work, so a server can join its pool's threads at once on shutdown.

A caller's slot is given back only when the thread has really finished,
not when the waiter gave up, so the limit counts threads truly in use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, DeferredSemaphore, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from geniam.errors import GeniCode, GeniError
from geniam.trust.paths import Abandoned, Deadline

_T = TypeVar("_T")

SHUTTING_DOWN = "the server is shutting down; credential verification stopped"
"""The reason given to callers whose verification was stopped by L{VerificationRunner.stop}."""


def default_per_caller(threadpool: ThreadPool | None) -> int:
    """Half the pool's threads (at least one): what one caller may use at once by default."""
    threads = getattr(threadpool, "max", 2) if threadpool is not None else 2
    return max(1, int(threads) // 2)


def _refuse_abandoned(failure: Failure) -> Failure:
    """Turn abandoned work into the GENI error its waiter is given."""
    if failure.check(Abandoned):
        return Failure(GeniError(GeniCode.SERVERBUSY, str(failure.value)))
    return failure


class VerificationRunner:
    """
    Runs verification work with a deadline token, a per-caller limit and a stop switch.

    @ivar max_per_caller: how many pieces of work one caller may have in the pool at once.
    """

    def __init__(
        self,
        threadpool: ThreadPool | None = None,
        reactor: IReactorFromThreads | None = None,
        max_per_caller: int | None = None,
    ) -> None:
        """
        @param threadpool: the bounded pool to run work in; C{None} runs it inline.
        @param reactor: the reactor the pool reports back to (required with a pool).
        @param max_per_caller: the per-caller limit; half the pool's threads if C{None}.
        """
        if threadpool is not None and reactor is None:
            raise ValueError("a reactor is needed to use a thread pool")
        self._threadpool = threadpool
        self._reactor = reactor
        self.max_per_caller = max_per_caller if max_per_caller is not None else default_per_caller(threadpool)
        if self.max_per_caller < 1:
            raise ValueError("max_per_caller must be at least 1")
        self._limits: dict[bytes, DeferredSemaphore] = {}
        self._live: set[Deadline] = set()
        self._stopped = False

    def deadline(self) -> Deadline:
        """
        A new deadline token, abandoned by L{stop}; L{finished} forgets it.

        @raise GeniError: SERVERBUSY once L{stop} was called.
        """
        if self._stopped:
            raise GeniError(GeniCode.SERVERBUSY, SHUTTING_DOWN)
        deadline = Deadline()
        self._live.add(deadline)
        return deadline

    def finished(self, deadline: Deadline, reason: str) -> None:
        """The waiter is done with C{deadline}: abandon what still runs for it with C{reason}."""
        deadline.abandon(reason)
        self._live.discard(deadline)

    def stop(self) -> None:
        """Abandon all work in flight and refuse new work (call before joining the pool)."""
        self._stopped = True
        for deadline in list(self._live):
            deadline.abandon(SHUTTING_DOWN)
        self._live.clear()

    def run(
        self, caller: bytes, deadline: Deadline, function: Callable[..., _T], *args: Any
    ) -> Deferred[_T]:
        """
        Run C{function(deadline, *args)} for C{caller}: in the pool once the
        caller has a free slot, or inline without a pool.

        Cancelling the result abandons C{deadline}; the caller's slot is
        freed when the thread is done.
        """
        if self._threadpool is None or self._reactor is None:
            return maybeDeferred(function, deadline, *args).addErrback(_refuse_abandoned)
        limit = self._limits.get(caller)
        if limit is None:
            limit = self._limits[caller] = DeferredSemaphore(self.max_per_caller)
        waiting: Deferred[Any] = limit.acquire()
        return waiting.addCallback(lambda _: self._start(caller, limit, deadline, function, args))

    def _start(
        self,
        caller: bytes,
        limit: DeferredSemaphore,
        deadline: Deadline,
        function: Callable[..., _T],
        args: tuple[Any, ...],
    ) -> Deferred[_T]:
        assert self._threadpool is not None and self._reactor is not None
        reactor = self._reactor
        result: Deferred[_T] = Deferred(lambda _: deadline.abandon("verification cancelled"))
        result.addErrback(_refuse_abandoned)

        def deliver(ok: bool, value: Any) -> None:
            limit.release()
            if limit.tokens == limit.limit and not limit.waiting:
                self._limits.pop(caller, None)
            if result.called:
                return
            if ok:
                result.callback(value)
            else:
                result.errback(value)

        def report(ok: bool, value: Any) -> None:
            reactor.callFromThread(deliver, ok, value)

        self._threadpool.callInThreadWithCallback(report, function, deadline, *args)
        return result
