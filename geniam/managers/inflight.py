"""
Work in flight on the island resource manager: every public operation is a
coroutine run as a L{Deferred} that its caller can wait for, its domain
errors leaving as L{GeniError}s, and
L{geniam.managers.island.IslandResourceManager.stop} waits until none is
left (L{WorkInFlight}).

L{tracked} turns an C{async def} method into the public, Deferred-returning
one, so each operation is written once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.managers.errors import DomainError, TranslatedError, as_geni_error
from geniam.store.errors import StoreError

T = TypeVar("T")
P = ParamSpec("P")


class Tracking(Protocol):
    """Something that runs coroutines as tracked L{Deferred}s."""

    def _track(self, coroutine: Coroutine[Any, Any, T]) -> Deferred[T]: ...


S = TypeVar("S", bound=Tracking)


def tracked(method: Callable[Concatenate[S, P], Coroutine[Any, Any, T]]) -> Callable[Concatenate[S, P], Deferred[T]]:
    """Make the C{async def} C{method} a method firing a tracked L{Deferred} with its result (or its error)."""

    @functools.wraps(method)
    def run(self: S, *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        return self._track(method(self, *args, **kwargs))

    return run


async def _translated(coroutine: Coroutine[Any, Any, T]) -> T:
    """Await C{coroutine}; its domain errors leave as the L{GeniError}s of this manager's interface."""
    try:
        return await coroutine
    except DomainError as e:
        raise as_geni_error(e) from None


class WorkInFlight:
    """
    The coroutines a manager runs: each as a L{Deferred} (L{_track}), or in
    the background with its failure logged (L{_background}); L{_when_idle}
    fires once none is left.
    """

    log: Logger

    def __init__(self) -> None:
        self._busy: set[object] = set()
        self._idle_waiters: list[Deferred[None]] = []

    def _track(self, coroutine: Coroutine[Any, Any, T]) -> Deferred[T]:
        d = Deferred.fromCoroutine(_translated(coroutine))
        if d.called:
            return d
        token = object()
        self._busy.add(token)

        def done(result: Any) -> Any:
            self._busy.discard(token)
            if not self._busy:
                waiters, self._idle_waiters = self._idle_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
            return result

        d.addBoth(done)
        return d

    def _background(self, coroutine: Coroutine[Any, Any, Any], what: str) -> None:
        def failed(failure: Failure) -> None:
            if failure.check(TranslatedError) and isinstance(failure.value.cause, StoreError):
                # The store logs the outage and its end once; the next check catches up.
                self.log.debug("{what} waits for the database: {error}", what=what, error=failure.value.output)
                return
            self.log.failure("{what} failed", failure, what=what)

        self._track(coroutine).addErrback(failed)

    def _when_idle(self) -> Deferred[None]:
        if not self._busy:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._idle_waiters.append(d)
        return d
