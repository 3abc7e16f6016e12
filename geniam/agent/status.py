# -*- test-case-name: tests.loopback.test_observe -*-
"""
The gateway agent's status listener (C{--status-port}): C{/metrics} and
C{/healthz}, healthy while its PB listener listens and its back end runs.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from geniam.observe.health import HealthChecks, flag_check, install_observability
from geniam.observe.metrics import ServiceMetrics, watch_agent
from geniam.observe.observation import ServiceObservation
from geniam.web.status import StatusListener


def _listening(listener: StreamServerEndpointService) -> bool:
    waiting = listener._waitingForPort
    return bool(listener.running and waiting is not None and waiting.called and not isinstance(waiting.result, Exception))


class AgentStatusService(Service):
    """
    Serves the agent's C{/metrics} and C{/healthz} on a plain-HTTP listener.

    @ivar metrics: the agent's metrics, in its own registry.
    @ivar health: its checks: the PB listener and the back end.
    @ivar status: the listener.
    """

    log = Logger()

    def __init__(
        self, reactor: Any, port: int, interface: str, factory: Any, listener: StreamServerEndpointService, backend: Service
    ) -> None:
        self.metrics = ServiceMetrics("agent")
        watch_agent(self.metrics, factory)
        self.health = HealthChecks(reactor)
        self.health.add("listener", flag_check(lambda: _listening(listener), "the PB listener is not listening"))
        self.health.add("backend", flag_check(lambda: bool(backend.running), "the gateway back end is not running"))
        self.status = StatusListener(reactor, port, interface)
        install_observability(self.status.root, self.metrics, self.health)
        self.status.access_log = ServiceObservation(reactor, self.metrics).access

    def startService(self) -> None:
        """Start listening (a failure is logged: the agent serves without it)."""
        super().startService()
        d = Deferred.fromCoroutine(self.status.listen())
        d.addCallback(lambda _: self.log.info("status listener (metrics, health) at {url}", url=self.status.url))
        d.addErrback(lambda f: self.log.failure("the status listener could not start", f))

    def stopService(self) -> Deferred[None]:
        """Stop listening."""
        super().stopService()
        return Deferred.fromCoroutine(self.status.close())
