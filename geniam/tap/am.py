# -*- test-case-name: tests.test_tap -*-
"""
C{twistd geniam-am}: the aggregate manager's options and service tree.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage

from geniam.agent.simulated import SimulatedGateway
from geniam.config import ServerOptions, duration, positive_int
from geniam.managers.aggregate import AggregateInfo, AggregateManager
from geniam.managers.island import IslandResourceManager
from geniam.protocols.xmlrpc import DEFAULT_MAX_BODY, GeniXmlRpcResource, make_site
from geniam.store.sqlite import SQLiteStore
from geniam.tap.common import ServerTrust, ThreadPoolService, listen_tls, server_trust, tls_for
from geniam.trust.verifier import CredentialVerifier
from geniam.urn import parse_urn


class Options(ServerOptions):
    """Flags of C{twistd geniam-am}; every one may also be set in the C{[am]} table of C{--config}."""

    role = "am"
    default_port = 8001
    synopsis = "[options]"
    optParameters = [
        ["database", None, None, "SQLite file (default <data-dir>/am.sqlite)."],
        ["url", None, None, "The URL clients use (default https://<interface>:<port>/)."],
        ["allocation-ttl", None, 172800.0, "How long an unprovisioned allocation is held (e.g. 48h).", duration],
        ["max-slot-length", None, 604800.0, "The longest slot one booking may hold (e.g. 7d).", duration],
        ["max-body", None, DEFAULT_MAX_BODY, "Largest request body accepted, in bytes.", positive_int],
        ["gateway-host", None, None, "The host experimenters log in to during their slot (shown in manifests)."],
        ["threads", None, 4, "Worker threads for credential checks.", positive_int],
    ]

    def check(self) -> None:
        """Cross-check the AM's options."""
        if self["url"] and not str(self["url"]).startswith("https://"):
            raise usage.UsageError("--url must be an https:// URL")


class AggregateService(MultiService):
    """
    One aggregate manager: its store, island resource manager and TLS
    XML-RPC listener, started in that order and stopped in reverse.

    The reactor does the I/O; C{clock} (the reactor by default) gives the
    time for bookings, credentials and certificates.

    @ivar port: the listening port once started.
    @ivar started: fires when the listener is up (a fresh Deferred per call of L{when_started}).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        trust: ServerTrust,
        store: Any,
        gateway: Any,
        port: int,
        interface: str,
        url: str | None = None,
        allocation_ttl: float = 172800.0,
        max_slot_length: float = 604800.0,
        max_body: int = DEFAULT_MAX_BODY,
        gateway_host: str | None = None,
        threads: int = 4,
        clock: Any = None,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.clock = reactor if clock is None else clock
        self.trust = trust
        self.store = store
        self.gateway = gateway
        self.urn = trust.identity.gid.urn or ""
        urn = parse_urn(self.urn)
        if urn.type != "authority":
            raise usage.UsageError(f"the AM certificate must name an authority URN, not {self.urn!r}")
        self._port_number = port
        self._interface = interface
        self._url = url
        self._max_body = max_body
        self.pool = ThreadPoolService("geniam-am-crypto", threads)
        self.pool.setServiceParent(self)
        self.resource_manager = IslandResourceManager(
            store,
            gateway,
            self.clock,
            urn.authority,
            switches=getattr(gateway, "switches", ()),
            links=getattr(gateway, "links", ()),
            allocation_ttl=allocation_ttl,
            max_slot_length=max_slot_length,
        )
        self.verifier = CredentialVerifier(trust.roots, self.clock, threadpool=self.pool.pool, reactor=reactor)
        self._gateway_host = gateway_host
        self.port: IListeningPort | None = None
        self.manager: AggregateManager | None = None
        self._waiters: list[Deferred[AggregateService]] = []
        self._ready = False

    @property
    def url(self) -> str:
        """The URL the AM serves AM API v3 at."""
        if self._url:
            return self._url
        host = self.port.getHost() if self.port is not None else None
        port = host.port if host is not None else self._port_number
        return f"https://{self._interface or 'localhost'}:{port}/"

    def when_started(self) -> Deferred[AggregateService]:
        """A Deferred that fires with this service once it listens."""
        d: Deferred[AggregateService] = Deferred()
        if self._ready:
            d.callback(self)
        else:
            self._waiters.append(d)
        return d

    def startService(self) -> None:
        """Open the store, start the island's checks, then listen."""
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_start)

    def _failed_start(self, failure: Any) -> None:
        self.log.failure("the aggregate manager could not start", failure)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    async def _start(self) -> None:
        await self.store.start()
        await self.resource_manager.start()
        tls = tls_for(self.trust, self.clock)
        self.manager = AggregateManager(
            self.resource_manager,
            self.verifier,
            AggregateInfo(self.urn, "", self._gateway_host),
            self.clock,
        )
        resource = GeniXmlRpcResource(self.manager, tls.peer_gid, max_body=self._max_body, reactor=self.reactor)
        site = make_site(resource)
        self.port = await listen_tls(self.reactor, self._port_number, self._interface, tls, site)
        self.manager.info = AggregateInfo(self.urn, self.url, self._gateway_host)
        self.log.info("aggregate manager {urn} serving AM API v3 at {url}", urn=self.urn, url=self.url)
        self._ready = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def stopService(self) -> Deferred[None]:
        """Stop listening, let work in flight finish, close the store."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        self._ready = False
        if self.port is not None:
            await self.port.stopListening()
            self.port = None
        await self.resource_manager.stop()
        await self.store.stop()
        await super().stopService()  # type: ignore[misc]


def build(options: Options, reactor: Any) -> AggregateService:
    """Build the aggregate manager an C{Options} describes."""
    data_dir = Path(options["data-dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    trust = server_trust(options, "am", reactor)
    if trust.domain is not None:
        print(f"geniam-am: development trust domain in {trust.domain.path}")
        print(f"geniam-am: trust roots {trust.roots_dir}; make users with 'geniam authority user {trust.domain.path} NAME'")
    database = options["database"] or os.fspath(data_dir / "am.sqlite")
    store = SQLiteStore(database, reactor=reactor)
    gateway = SimulatedGateway(clock=reactor)
    return AggregateService(
        reactor,
        trust,
        store,
        gateway,
        options["port"],
        options["interface"],
        url=options["url"],
        allocation_ttl=options["allocation-ttl"],
        max_slot_length=options["max-slot-length"],
        max_body=options["max-body"],
        gateway_host=options["gateway-host"],
        threads=options["threads"],
    )


def makeService(options: Options) -> IService:
    """The twistd entry point: the aggregate manager on the global reactor."""
    from twisted.internet import reactor

    return build(options, reactor)
