# -*- test-case-name: tests.managers.test_replay -*-
"""
One piece of work awaited by any number of callers.

A L{Shared} holds the outcome of one Deferred and gives every waiter a
Deferred of its own, so no Deferred is ever handed to two callers and a
waiter that cancels its own Deferred neither disturbs the others nor the
work.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

_T = TypeVar("_T")


class Shared(Generic[_T]):
    """
    The outcome of one piece of work, handed out to many waiters.

    @ivar done: whether the work has finished.
    """

    def __init__(self, work: Deferred[_T]) -> None:
        """
        @param work: the work; its result (or failure) is consumed here and
            passed on to each waiter.
        """
        self._waiters: list[Deferred[_T]] = []
        self._outcome: tuple[bool, Any] | None = None
        self.done = False
        work.addBoth(self._finished)

    def _finished(self, result: Any) -> None:
        self.done = True
        if isinstance(result, Failure):
            self._outcome = (False, result.value)
        else:
            self._outcome = (True, result)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            self._fire(waiter)

    def _fire(self, waiter: Deferred[_T]) -> None:
        assert self._outcome is not None
        ok, value = self._outcome
        if ok:
            waiter.callback(value)
        else:
            waiter.errback(Failure(value))

    def _cancel(self, waiter: Deferred[_T]) -> None:
        if waiter in self._waiters:
            self._waiters.remove(waiter)

    @property
    def failed(self) -> bool:
        """Whether the work finished with a failure."""
        return self._outcome is not None and not self._outcome[0]

    @property
    def waiting(self) -> int:
        """How many waiters are waiting now."""
        return len(self._waiters)

    def wait(self) -> Deferred[_T]:
        """
        A new Deferred firing with the work's result (or failing as it did).

        Cancelling it fails only that Deferred, with L{CancelledError}.
        """
        waiter: Deferred[_T] = Deferred(self._cancel)
        if self._outcome is not None:
            self._fire(waiter)
        else:
            self._waiters.append(waiter)
        return waiter
