# -*- test-case-name: tests.test_sm_tap,tests.test_am_loopback,tests.test_tap_agent -*-
"""
Pieces every geniam daemon is built from: its identity and trust roots,
a bounded thread pool, a TLS XML-RPC listener, and the service serving
AM API v3 on one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from geniam.protocols.xmlrpc import DEFAULT_MAX_BODY, GeniXmlRpcResource, make_site
from geniam.trust.domain import TrustDomain
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.tls import GeniServerTLSOptions, server_tls_options
from geniam.web.status import StatusListener

log = Logger()


@dataclass
class ServerTrust:
    """
    A daemon's own identity and the roots its callers must chain to.

    @ivar domain: the development trust domain used, when nothing was configured.
    """

    identity: Identity
    roots: TrustRoots
    roots_dir: Path
    domain: TrustDomain | None = None


def server_trust(options: Any, role: str, reactor: Any) -> ServerTrust:
    """
    Load the identity and trust roots named by the options, or fall back on
    a development trust domain in C{<data-dir>/trust} (created on first
    start, with an aggregate identity named after the role).
    """
    domain: TrustDomain | None = None
    if options["certificate"]:
        if not options["trust-roots"]:
            raise usage.UsageError("--certificate needs --trust-roots")
        identity = Identity.from_files(options["certificate"], options["private-key"])
    else:
        domain = TrustDomain.open_or_create(Path(options["data-dir"]) / "trust", reactor=reactor)
        identity = domain.ensure_aggregate(role)
    roots_dir = Path(options["trust-roots"]) if options["trust-roots"] else domain.roots_dir  # type: ignore[union-attr]
    roots = TrustRoots.from_directory(roots_dir)
    return ServerTrust(identity, roots, roots_dir, domain)


class ThreadPoolService(Service):
    """A named, bounded thread pool for CPU work, started and stopped with the service tree."""

    def __init__(self, name: str, maximum: int = 4) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=maximum, name=name)

    def startService(self) -> None:
        """Start the pool's threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        """Join the pool's threads."""
        super().stopService()
        self.pool.stop()


async def listen_tls(
    reactor: Any, port: int, interface: str, tls: GeniServerTLSOptions, site: Any
) -> IListeningPort:
    """Listen for TLS connections that must present a client certificate."""
    endpoint = SSL4ServerEndpoint(reactor, port, tls, interface=interface)  # type: ignore[arg-type]
    listening: IListeningPort = await endpoint.listen(site)
    return listening


def tls_for(trust: ServerTrust, reactor: Any) -> GeniServerTLSOptions:
    """Server TLS options for a daemon's identity and roots."""
    return server_tls_options(trust.identity, trust.roots, reactor)


class TLSXmlRpcService(MultiService):
    """
    A service serving an AM API v3 object over TLS XML-RPC, with client
    certificates required: its children start first, then L{start} runs
    (which calls L{listen}); on stop the listener closes first, then
    L{wind_down} runs.

    The reactor does the I/O; C{clock} (the reactor by default) gives the
    time for credentials and certificates.

    @cvar role: what the service is, for the log.
    @ivar port: the listening port once started.
    @ivar urn: the URN of the service's certificate.
    @ivar status: the plain-HTTP status listener, if any: it starts
        listening once L{start} has finished and closes first on stop.
    """

    log = Logger()
    role = "server"

    def __init__(
        self,
        reactor: Any,
        trust: ServerTrust,
        port: int,
        interface: str,
        url: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        clock: Any = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.clock = reactor if clock is None else clock
        self.trust = trust
        self.urn = trust.identity.gid.urn or ""
        self._port_number = port
        self._interface = interface
        self._url = url
        self._max_body = max_body
        self.port: IListeningPort | None = None
        self._waiters: list[Deferred[Any]] = []
        self._ready = False
        self.status: StatusListener | None = None

    @property
    def url(self) -> str:
        """The URL the service serves AM API v3 at."""
        if self._url:
            return self._url
        host = self.port.getHost() if self.port is not None else None
        port = getattr(host, "port", self._port_number)
        return f"https://{self._interface or 'localhost'}:{port}/"

    def when_started(self) -> Deferred[Any]:
        """A Deferred that fires with this service once L{start} has finished (a fresh one per call)."""
        d: Deferred[Any] = Deferred()
        if self._ready:
            d.callback(self)
        else:
            self._waiters.append(d)
        return d

    def startService(self) -> None:
        """Start the children, then L{start}; the waiters learn how it went."""
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_start)

    async def _start(self) -> None:
        await self.start()
        if self.status is not None:
            await self.status.listen()
            self.log.info("status listener (booking calendar) at {url}", url=self.status.url)
        self._ready = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def _failed_start(self, failure: Any) -> None:
        self.log.failure("the {role} could not start", failure, role=self.role)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    async def start(self) -> None:
        """
        What starting takes once the children run. Subclasses override it
        and call L{listen} with their API object; by default it does nothing.
        """

    async def listen(self, api: Any) -> None:
        """Serve C{api} (the object the XML-RPC resource dispatches to) on the configured port."""
        tls = tls_for(self.trust, self.clock)
        resource = GeniXmlRpcResource(api, tls.peer_gid, max_body=self._max_body, reactor=self.reactor)
        self.port = await listen_tls(self.reactor, self._port_number, self._interface, tls, make_site(resource))

    def stopService(self) -> Deferred[None]:
        """Stop listening, then L{wind_down}."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._ready = False
        if self.status is not None:
            await self.status.close()
        port, self.port = self.port, None
        stopped = port.stopListening() if port is not None else None
        if stopped is not None:
            await stopped
        await self.wind_down()

    async def wind_down(self) -> None:
        """What stopping takes once the listener is closed: by default, stop the children."""
        await MultiService.stopService(self)  # type: ignore[misc]
