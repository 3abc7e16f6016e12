# -*- test-case-name: tests.protocols.test_listener -*-
"""
How many client connections a TLS listener holds, in all and per address.

A flood of idle connections must not take the descriptors the server
needs for the clients it already has (and for its database, its gateway
agent and its own outgoing calls). So a listener holds at most
L{descriptor_budget} connections: the process's descriptor limit
(C{ulimit -n}) less a reserve. Past the budget, and past
C{max_connections_per_client} connections from one address, a new
connection is accepted and closed at once, before any TLS: the client
sees a closed connection, the server spends nothing on it, and accepting
goes on (no busy loop on a full backlog). Clients already connected are
served as before. Saturation is logged once when it begins and once when
it ends (at three quarters of the budget), and a capped address once per
episode, never once per refused connection.

Should descriptors still run out (taken by something else), Twisted's
own C{EMFILE} handling accepts and closes what is waiting, with a
reserved descriptor, so that case does not loop either.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from geniam.protocols.httpchannel import DEFAULT_IDLE_TIMEOUT, DEFAULT_MIN_BODY_RATE, DEFAULT_REQUEST_TIMEOUT

DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 64
"""Default cap on connections from one address (0: no cap)."""

DESCRIPTOR_RESERVE = 64
"""Descriptors a listener leaves to the rest of the process."""

RECOVERY_FRACTION = 0.75
"""Saturation ends, for the log, when the connections fall to this fraction of the budget (so a count hovering at the budget is logged once)."""


@dataclass(frozen=True)
class ListenerLimits:
    """
    The bounds of one TLS XML-RPC listener (the C{--request-timeout},
    C{--min-body-rate}, C{--idle-timeout} and C{--max-connections-per-client}
    options).

    @ivar request_timeout: seconds for a request's headers.
    @ivar min_body_rate: the rate floor for a request body, in bytes per second.
    @ivar idle_timeout: seconds a kept-alive connection may idle between requests.
    @ivar max_connections_per_client: connections one address may hold (0: no cap).
    @ivar descriptor_reserve: descriptors left to the rest of the process.
    """

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    min_body_rate: int = DEFAULT_MIN_BODY_RATE
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    max_connections_per_client: int = DEFAULT_MAX_CONNECTIONS_PER_CLIENT
    descriptor_reserve: int = DESCRIPTOR_RESERVE


def descriptor_budget(reserve: int = DESCRIPTOR_RESERVE) -> int | None:
    """
    How many client connections a listener may hold: the soft descriptor
    limit less C{reserve}, but at least a quarter of the limit; C{None}
    where the limit is unlimited or unknown.
    """
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    return max(soft - reserve, soft // 4, 1)


class ConnectionBudget:
    """
    Count open connections, in all and per address, and admit new ones
    within C{max_total} and C{max_per_client}.

    @ivar max_total: connections held at most (C{None}: no limit).
    @ivar max_per_client: connections one address may hold (0: no cap).
    @ivar total: connections open now.
    @ivar refused: connections refused since the last saturation began.
    """

    log = Logger()

    def __init__(self, max_total: int | None, max_per_client: int = 0) -> None:
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        self.refused = 0
        self._by_host: Counter[str] = Counter()
        self._saturated = False
        self._capped: set[str] = set()

    def open_from(self, host: str) -> int:
        """Connections open now from C{host}."""
        return self._by_host[host]

    def admit(self, host: str) -> bool:
        """Count a new connection from C{host} and return C{True}, or return C{False} to refuse it."""
        if self.max_total is not None and self.total >= self.max_total:
            if not self._saturated:
                self._saturated = True
                self.refused = 0
                self.log.warn(
                    "{total} connections open, the most the descriptor limit allows:"
                    " refusing new connections until some close",
                    total=self.total,
                )
            self.refused += 1
            return False
        if self.max_per_client and self._by_host[host] >= self.max_per_client:
            if host not in self._capped:
                self._capped.add(host)
                self.log.warn(
                    "{host} holds {count} connections (--max-connections-per-client):"
                    " refusing more from it until some close",
                    host=host,
                    count=self._by_host[host],
                )
            return False
        self._by_host[host] += 1
        self.total += 1
        return True

    def release(self, host: str) -> None:
        """A connection from C{host} closed."""
        self._by_host[host] -= 1
        if self._by_host[host] <= 0:
            del self._by_host[host]
        self.total -= 1
        if host in self._capped and self._by_host[host] < self.max_per_client:
            self._capped.discard(host)
        if self._saturated and self.max_total is not None and self.total <= self.max_total * RECOVERY_FRACTION:
            self._saturated = False
            self.log.info(
                "{total} connections open: accepting new connections again ({refused} refused meanwhile)",
                total=self.total,
                refused=self.refused,
            )


def _host(address: IAddress | None) -> str:
    return str(getattr(address, "host", address))


class GuardedTLSFactory(TLSMemoryBIOFactory):
    """
    TLS around an HTTP site, refusing connections its L{ConnectionBudget}
    does not admit: C{buildProtocol} answers C{None}, so the listening port
    closes the new socket at once.
    """

    def __init__(self, tls: Any, site: Any, budget: ConnectionBudget, clock: IReactorTime) -> None:
        """
        @param tls: the server TLS options (an C{IOpenSSLServerConnectionCreator}).
        @param site: the factory of the protocol inside TLS.
        @param budget: decides which connections are held.
        @param clock: the reactor, for TLS's write buffering.
        """
        super().__init__(tls, False, site, clock)
        self.budget = budget
        self._hosts: dict[TLSMemoryBIOProtocol, str] = {}

    def buildProtocol(self, addr: IAddress | None) -> TLSMemoryBIOProtocol | None:  # type: ignore[override]
        """A TLS protocol for an admitted connection; C{None} to refuse it."""
        host = _host(addr)
        if not self.budget.admit(host):
            return None
        try:
            protocol = super().buildProtocol(addr)
        except BaseException:
            self.budget.release(host)
            raise
        self._hosts[protocol] = host
        return protocol

    def unregisterProtocol(self, protocol: Any) -> None:
        """A connection closed: give its place back."""
        super().unregisterProtocol(protocol)
        host = self._hosts.pop(protocol, None)
        if host is not None:
            self.budget.release(host)
