"""
Work in flight on the island resource manager: every public operation is a
coroutine run as a L{Deferred} that its caller can wait for, and
L{IslandResourceManager.stop} waits until none is left.

L{tracked} turns an C{async def} method into the public, Deferred-returning
one, so each operation is written once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from twisted.internet.defer import Deferred

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
