# -*- test-case-name: tests.loopback.test_observe -*-
"""
C{/healthz} and C{/metrics} on the status listener.

A daemon's health is a list of named checks, each a coroutine function
answering None when its part is up, or why it is not. C{/healthz} runs
them all (each within L{CHECK_TIMEOUT}) and answers 200 if every one is
up, else 503; the body has one line per check, C{name: ok} or
C{name: the reason}, so a supervisor's log shows why.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError as DeferredTimeout
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from geniam.errors import GeniError
from geniam.store.errors import StoreFailure
from geniam.observe.metrics import ServiceMetrics

CHECK_TIMEOUT = 5.0
"""Seconds one health check may take before it counts as failed."""

Check = Callable[[], Awaitable[str | None]]
"""A health check: None when up, else a one-line reason."""


class HealthChecks:
    """The named checks of one daemon, run in the order they were added."""

    log = Logger()

    def __init__(self, clock: IReactorTime, timeout: float = CHECK_TIMEOUT) -> None:
        self._clock = clock
        self._timeout = timeout
        self._checks: list[tuple[str, Check]] = []
        self.notes: list[tuple[str, Callable[[], str]]] = []

    def add(self, name: str, check: Check) -> None:
        """Add a check called C{name}."""
        self._checks.append((name, check))

    def add_note(self, name: str, describe: Callable[[], str]) -> None:
        """Show C{name: describe()} on the health page; it never makes the daemon unhealthy."""
        self.notes.append((name, describe))

    async def run(self) -> list[tuple[str, str | None]]:
        """Run every check: C{[(name, None or reason)]}."""
        results = []
        for name, check in self._checks:
            results.append((name, await self._one(check)))
        return results

    async def _one(self, check: Check) -> str | None:
        d = Deferred.fromCoroutine(_as_coroutine(check))
        d.addTimeout(self._timeout, self._clock)
        try:
            return await d
        except DeferredTimeout:
            return f"no answer within {self._timeout:g} s"
        except GeniError as e:
            return e.output
        except StoreFailure as e:
            return e.message
        except Exception as e:
            self.log.failure("a health check failed unexpectedly")
            return f"check failed: {type(e).__name__}"


async def _as_coroutine(check: Check) -> str | None:
    return await check()


def store_check(store: Any) -> Check:
    """Up when the booking store answers a count."""

    async def check() -> str | None:
        await store.count()
        return None

    return check


def gateway_check(gateway: Any) -> Check:
    """Up while logged in to the gateway agent."""

    async def check() -> str | None:
        if getattr(gateway, "connected", True):
            return None
        return f"gateway agent unreachable: {getattr(gateway, 'last_error', '') or 'not connected'}"

    return check


def flag_check(is_up: Callable[[], bool], reason: str) -> Check:
    """Up while C{is_up()}; otherwise C{reason}."""

    async def check() -> str | None:
        return None if is_up() else reason

    return check


class _AsyncText(Resource):
    """A leaf answering GET with text computed by a coroutine."""

    isLeaf = True
    content_type = b"text/plain; charset=utf-8"

    def render_GET(self, request: Request) -> int:
        d = Deferred.fromCoroutine(self.answer())
        d.addCallback(self._send, request)
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def answer(self) -> tuple[int, bytes]:
        """The status and body."""
        raise NotImplementedError

    def _send(self, answer: tuple[int, bytes], request: Request) -> None:
        status, body = answer
        if request.finished or request._disconnected:
            return
        request.setResponseCode(status)
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-store")
        request.write(body)
        request.finish()

    def _failed(self, failure: Any, request: Request) -> None:
        Logger().failure("the status page failed", failure)
        self._send((500, b"internal error\n"), request)


class HealthResource(_AsyncText):
    """C{/healthz}: 200 when every check is up, else 503; one line per check."""

    def __init__(self, checks: HealthChecks) -> None:
        super().__init__()
        self._checks = checks

    async def answer(self) -> tuple[int, bytes]:
        results = await self._checks.run()
        lines = [f"{name}: {reason or 'ok'}" for name, reason in results]
        lines += [f"{name}: {describe()}" for name, describe in self._checks.notes]
        status = 200 if all(reason is None for _, reason in results) else 503
        return status, ("\n".join(lines) + "\n").encode("utf-8")


class MetricsResource(_AsyncText):
    """C{/metrics}: the Prometheus text exposition of one registry."""

    content_type = b"text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, metrics: ServiceMetrics) -> None:
        super().__init__()
        self._metrics = metrics

    async def answer(self) -> tuple[int, bytes]:
        return 200, await self._metrics.exposition()


def install_observability(root: Resource, metrics: ServiceMetrics, checks: HealthChecks) -> None:
    """Serve C{/metrics} and C{/healthz} under C{root}."""
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"healthz", HealthResource(checks))
