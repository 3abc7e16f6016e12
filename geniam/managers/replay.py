# -*- test-case-name: tests.managers.test_replay -*-
"""
Answering a repeated C{call_id} with the original result.

Clients (and slice managers forwarding to each other) may send the same
call twice, tagged with the same C{call_id} option. Within a window, a
repeated C{(caller, method, call_id)} gets the result of the first call
-- the same return struct, or the same L{GeniError} -- and is not run
again. A repeat arriving while the first is still running waits for it
(each waiter with a Deferred of its own). Unexpected exceptions are not
remembered: the next repeat runs the call again.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from geniam.errors import GeniError
from geniam.managers.shared import Shared

ReplayKey = tuple[str, str, str]
"""C{(caller key, method, call_id)}."""

DEFAULT_WINDOW = 600.0
"""Seconds a finished call's result is kept for repeats."""

DEFAULT_MAX_ENTRIES = 10000
"""How many finished calls are remembered at most (the oldest are forgotten first)."""


class CallReplay:
    """
    Runs each C{(caller, method, call_id)} once within a window.

    @ivar window: seconds a result is kept after the call finished.
    @ivar max_entries: the bound on remembered results.
    @ivar replayed: how many calls were answered from memory or by waiting.
    """

    def __init__(
        self, clock: IReactorTime, window: float = DEFAULT_WINDOW, max_entries: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self._clock = clock
        self.window = window
        self.max_entries = max_entries
        self.replayed = 0
        self._finished: OrderedDict[ReplayKey, tuple[float, bool, Any]] = OrderedDict()
        self._running: dict[ReplayKey, Shared[Any]] = {}

    def __len__(self) -> int:
        return len(self._finished)

    def knows(self, key: ReplayKey) -> bool:
        """Whether the call C{key} is running or its answer is remembered."""
        self.expire()
        return key in self._running or key in self._finished

    def in_flight(self, key: ReplayKey) -> bool:
        """Whether the call C{key} is running now."""
        return key in self._running

    def run(self, key: ReplayKey, work: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{work} for C{key}, or answer as the first call with C{key} did.

        @param key: C{(caller key, method, call_id)}.
        @param work: starts the call; called at most once per key and window.
        @return: a new Deferred with the (original) result.
        """
        self.expire()
        remembered = self._finished.get(key)
        if remembered is not None:
            self.replayed += 1
            _, ok, value = remembered
            if ok:
                return succeed(copy.deepcopy(value))
            return fail(GeniError(value.code, value.output, copy.deepcopy(value.value)))
        running = self._running.get(key)
        if running is not None:
            self.replayed += 1
            waiter = running.wait()
            waiter.addCallback(copy.deepcopy)
            return waiter
        shared: Shared[Any] = Shared(self._remember(key, work()))
        if not shared.done:
            self._running[key] = shared
        return shared.wait()

    def _remember(self, key: ReplayKey, d: Deferred[Any]) -> Deferred[Any]:
        def done(result: Any) -> Any:
            self._running.pop(key, None)
            now = self._clock.seconds()
            if isinstance(result, Failure):
                if isinstance(result.value, GeniError):
                    self._store(key, now, False, result.value)
            else:
                self._store(key, now, True, copy.deepcopy(result))
            return result

        return d.addBoth(done)

    def _store(self, key: ReplayKey, now: float, ok: bool, value: Any) -> None:
        self._finished[key] = (now, ok, value)
        self._finished.move_to_end(key)
        while len(self._finished) > self.max_entries:
            self._finished.popitem(last=False)

    def expire(self) -> int:
        """
        Forget results older than the window.

        @return: how many were forgotten.
        """
        limit = self._clock.seconds() - self.window
        dropped = 0
        while self._finished:
            key, (finished_at, _, _) = next(iter(self._finished.items()))
            if finished_at > limit:
                break
            del self._finished[key]
            dropped += 1
        return dropped
