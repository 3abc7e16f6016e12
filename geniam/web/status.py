# -*- test-case-name: tests.web.test_status -*-
"""
The status listener: plain HTTP, apart from the TLS AM API listener,
serving pages for people and for monitoring (the booking calendar at C{/},
C{/calendar.ics}, C{/schedule.json}; C{/metrics} and C{/healthz}, see
L{geniam.observe.health}).

It is off unless C{--status-port} is given (C{0} picks a free port), and
binds to 127.0.0.1 unless C{--status-interface} says otherwise: it
answers anyone who can reach it, without certificates, so it shows only
what the advertisement already shows everyone holding a user credential.
Features add their pages as children of L{StatusListener.root}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.web.resource import Resource
from twisted.web.server import Site

from geniam.config import port_number
from geniam.observe.access import AccessLogging

STATUS_OPTIONS: list[list[Any]] = [
    [
        "status-port",
        None,
        None,
        "Port of the plain-HTTP status listener: booking calendar, /metrics, /healthz (default: off; 0 picks a free port).",
        port_number,
    ],
    ["status-interface", None, "127.0.0.1", "Address the status listener binds to (default 127.0.0.1)."],
]
"""The flags of the status listener, for every role's options."""


class StatusSite(AccessLogging, Site):
    """The status listener's site; its access log may be replaced (L{AccessLogging})."""


class StatusListener:
    """
    A plain HTTP listener; pages are children of L{root}.

    @ivar port: the listening port once L{listen} has finished.
    @ivar access_log: called for every request answered, if set (see L{AccessLogging}).
    """

    def __init__(self, reactor: Any, port: int, interface: str = "127.0.0.1") -> None:
        self.reactor = reactor
        self.root = Resource()
        self._port_number = port
        self._interface = interface
        self.port: IListeningPort | None = None
        self.access_log: Callable[[Any], None] | None = None

    async def listen(self) -> None:
        """Start listening."""
        endpoint_type = TCP6ServerEndpoint if ":" in self._interface else TCP4ServerEndpoint
        endpoint = endpoint_type(self.reactor, self._port_number, interface=self._interface)
        site = StatusSite(self.root)
        site.access_log = self.access_log
        self.port = await endpoint.listen(site)

    async def close(self) -> None:
        """Stop listening (connections in flight are dropped)."""
        port, self.port = self.port, None
        stopped = port.stopListening() if port is not None else None
        if stopped is not None:
            await stopped

    @property
    def url(self) -> str:
        """The listener's base URL, C{http://127.0.0.1:PORT/}."""
        host = self._interface if ":" not in self._interface else f"[{self._interface}]"
        number = getattr(self.port.getHost(), "port", self._port_number) if self.port is not None else self._port_number
        return f"http://{host}:{number}/"
