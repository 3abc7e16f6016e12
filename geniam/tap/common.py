# -*- test-case-name: tests.tap.test_sm,tests.loopback.test_am,tests.tap.test_agent -*-
"""
Pieces every geniam daemon is built from: its identity and trust roots,
a bounded thread pool, a TLS XML-RPC listener, and the service serving
AM API v3 on one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource

from geniam.errors import GeniError
from geniam.protocols.listener import (
    DESCRIPTOR_RESERVE,
    ConnectionBudget,
    GuardedTLSFactory,
    ListenerLimits,
    descriptor_budget,
)
from geniam.observe.health import HealthChecks, flag_check, install_observability
from geniam.observe.metrics import ServiceMetrics
from geniam.observe.observation import ServiceObservation
from geniam.protocols.signatures import API_V3_SIGNATURES, Signature
from geniam.protocols.xmlrpc import DEFAULT_MAX_BODY, GeniSite, GeniXmlRpcResource, make_site
from geniam.trust.context import MakeContext
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

    @ivar roots_path: the trust roots' PEM file or folder.
    @ivar domain: the development trust domain used, when nothing was configured.
    """

    identity: Identity
    roots: TrustRoots
    roots_path: Path
    domain: TrustDomain | None = None


def server_trust(options: Any, role: str, reactor: Any) -> ServerTrust:
    """
    Load the identity and trust roots named by the options, or fall back on
    a development trust domain (with an aggregate identity named after the
    role): the domain whose C{roots} folder C{--trust-roots} names, if it
    names one, else C{<data-dir>/trust} (created on first start).

    @raise GeniError: if the certificate, key or trust roots cannot be loaded.
    """
    domain: TrustDomain | None = None
    if options["certificate"]:
        if not options["trust-roots"]:
            raise usage.UsageError("--certificate needs --trust-roots")
        try:
            identity = Identity.from_files(options["certificate"], options["private-key"])
        except GeniError as e:
            where = f"--certificate {options['certificate']} and --private-key {options['private-key']}"
            raise GeniError(e.code, f"cannot load {where}: {e.output}") from None
    else:
        domain = domain_of_roots(options["trust-roots"], reactor) if options["trust-roots"] else None
        if domain is None:
            domain = TrustDomain.open_or_create(Path(options["data-dir"]) / "trust", reactor=reactor)
        identity = domain.ensure_aggregate(role)
    roots_path = Path(options["trust-roots"]) if options["trust-roots"] else domain.roots_dir  # type: ignore[union-attr]
    roots = TrustRoots.from_path(roots_path)
    return ServerTrust(identity, roots, roots_path, domain)


def listener_limits(options: Any, reserve: int = DESCRIPTOR_RESERVE) -> ListenerLimits:
    """
    The listener bounds given by the options of L{geniam.config.LISTENER_PARAMETERS}.

    @param reserve: descriptors to leave to the rest of the process.
    """
    return ListenerLimits(
        request_timeout=options["request-timeout"],
        min_body_rate=options["min-body-rate"],
        idle_timeout=options["idle-timeout"],
        max_connections_per_client=options["max-connections-per-client"],
        descriptor_reserve=reserve,
    )


def domain_of_roots(roots_dir: str, reactor: Any) -> TrustDomain | None:
    """The development trust domain whose C{roots} folder C{roots_dir} is, or None."""
    folder = Path(roots_dir).resolve()
    if folder.name != "roots":
        return None
    try:
        domain = TrustDomain.open(folder.parent, reactor=reactor)
    except GeniError:
        return None
    return domain if domain.roots_dir.resolve() == folder else None


def users_hint(trust: ServerTrust) -> str:
    """
    How to make a user this daemon accepts, for its first-start message:
    in its development trust domain when the trust roots include that
    domain's authority, else from an authority of the trust roots.
    """
    domain = trust.domain
    if domain is not None and domain.roots_dir.resolve() == trust.roots_path.resolve():
        return f"make users with 'geniam authority user {domain.path} NAME'"
    return f"users need certificates issued by an authority in {trust.roots_path}"


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
    reactor: Any,
    port: int,
    interface: str,
    tls: GeniServerTLSOptions,
    site: Any,
    budget: ConnectionBudget | None = None,
) -> IListeningPort:
    """
    Listen for TLS connections that must present a client certificate,
    holding only those C{budget} admits (by default: within the
    descriptor limit, no cap per address).
    """
    if budget is None:
        budget = ConnectionBudget(descriptor_budget())
    endpoint = TCP4ServerEndpoint(reactor, port, interface=interface)
    listening: IListeningPort = await endpoint.listen(GuardedTLSFactory(tls, site, budget, reactor))
    return listening


def serve_xmlrpc(
    resource: GeniXmlRpcResource, limits: ListenerLimits, timers: Any, more: Mapping[str, IResource] | None = None
) -> tuple[GeniSite, ConnectionBudget]:
    """
    The site serving C{resource} (and C{more}, by path) and the connection
    budget of a listener with C{limits}; C{timers} (an C{IReactorTime})
    runs every timeout.
    """
    site = make_site(
        resource,
        more=more,
        reactor=timers,
        timeout=limits.idle_timeout,
        request_timeout=limits.request_timeout,
        min_body_rate=limits.min_body_rate,
    )
    budget = ConnectionBudget(descriptor_budget(limits.descriptor_reserve), limits.max_connections_per_client)
    return site, budget


def tls_for(trust: ServerTrust, reactor: Any) -> GeniServerTLSOptions:
    """Server TLS options for a daemon's identity and roots."""
    return server_tls_options(trust.identity, trust.roots, reactor)


ExtraAPI = tuple[Any, Mapping[str, Signature]]
"""A further API served on a listener: the object and its methods' signatures."""


class TLSXmlRpcService(MultiService):
    """
    A service serving an AM API v3 object over TLS XML-RPC, with client
    certificates required: its children start first, then L{start} runs
    (which calls L{listen}); on stop the listener closes first, then
    L{wind_down} runs (work in flight finishes), then the connections
    clients still keep open are dropped, so a stopped service answers
    nothing more.

    The reactor does the I/O and runs the listener's timeouts; C{clock}
    (the reactor by default) gives the time for credentials and
    certificates. C{limits} bounds the listener's requests and connections.

    @cvar role: what the service is, for the log.
    @cvar metrics_role: the role's short name, a label of its metrics.
    @ivar port: the listening port once started.
    @ivar budget: the listener's connection budget once started.
    @ivar urn: the URN of the service's certificate.
    @ivar status: the plain-HTTP status listener, if any: it starts
        listening once L{start} has finished and closes first on stop.
        It serves C{/metrics} (L{metrics}) and C{/healthz} (L{health}).
    @ivar metrics: the service's Prometheus metrics, in its own registry.
    @ivar health: the service's health checks (the listener's at first;
        subclasses add theirs).
    @ivar observation: logs and counts every call and request.
    """

    log = Logger()
    role = "server"
    metrics_role = "server"

    def __init__(
        self,
        reactor: Any,
        trust: ServerTrust,
        port: int,
        interface: str,
        url: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        clock: Any = None,
        limits: ListenerLimits = ListenerLimits(),
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
        self.limits = limits
        self.budget: ConnectionBudget | None = None
        self.port: IListeningPort | None = None
        self.site: GeniSite | None = None
        self._waiters: list[Deferred[Any]] = []
        self._ready = False
        self._start_failure: Any = None
        self.status: StatusListener | None = None
        self.metrics = ServiceMetrics(self.metrics_role)
        self.observation = ServiceObservation(reactor, self.metrics)
        self.health = HealthChecks(reactor)
        self.health.add("listener", flag_check(lambda: self.port is not None, f"the {self.role} is not listening"))

    @property
    def url(self) -> str:
        """The URL the service serves AM API v3 at."""
        if self._url:
            return self._url
        host = self.port.getHost() if self.port is not None else None
        port = getattr(host, "port", self._port_number)
        return f"https://{self._interface or 'localhost'}:{port}/"

    def when_started(self) -> Deferred[Any]:
        """
        A Deferred that fires with this service once L{start} has finished,
        or fails with why it could not (a fresh one per call).
        """
        d: Deferred[Any] = Deferred()
        if self._ready:
            d.callback(self)
        elif self._start_failure is not None:
            d.errback(self._start_failure)
        else:
            self._waiters.append(d)
        return d

    def startService(self) -> None:
        """Start the children, then L{start}; the waiters learn how it went."""
        super().startService()
        d = Deferred.fromCoroutine(self._start())
        d.addErrback(self._failed_start)

    async def _start(self) -> None:
        self._start_failure = None
        await self.start()
        if self.status is not None:
            install_observability(self.status.root, self.metrics, self.health)
            self.status.access_log = self.observation.access
            await self.status.listen()
            self.log.info("status listener (booking calendar) at {url}", url=self.status.url)
        self._ready = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self)

    def _failed_start(self, failure: Any) -> None:
        self._start_failure = failure
        waiters, self._waiters = self._waiters, []
        if not waiters:
            self.log.failure("the {role} could not start", failure, role=self.role)
        for waiter in waiters:
            waiter.errback(failure)

    async def start(self) -> None:
        """
        What starting takes once the children run. Subclasses override it
        and call L{listen} with their API object; by default it does nothing.
        """

    async def listen(
        self,
        api: Any,
        contexts: MakeContext,
        methods: Mapping[str, Signature] = API_V3_SIGNATURES,
        more: Mapping[str, ExtraAPI] | None = None,
    ) -> None:
        """
        Serve C{api} (the object the XML-RPC resource dispatches to) on the
        configured port; C{contexts} builds each call's context from the
        TLS peer and its credentials; C{methods} are the methods served.
        C{more} serves further APIs on the same port, by path: each is
        C{(api, signatures)}, its methods called with the TLS peer and
        their arguments.
        """
        tls = tls_for(self.trust, self.clock)
        resource = GeniXmlRpcResource(
            api,
            tls.peer_gid,
            methods=methods,
            max_body=self._max_body,
            reactor=self.reactor,
            observer=self.observation,
            contexts=contexts,
        )
        extra: dict[str, IResource] = {
            path: GeniXmlRpcResource(
                other, tls.peer_gid, max_body=self._max_body, methods=signatures, reactor=self.reactor, observer=self.observation
            )
            for path, (other, signatures) in (more or {}).items()
        }
        self.site, self.budget = serve_xmlrpc(resource, self.limits, self.reactor, extra)
        self.site.access_log = self.observation.access
        self.port = await listen_tls(self.reactor, self._port_number, self._interface, tls, self.site, self.budget)

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
        if self.site is not None:
            self.site.close_connections()

    async def wind_down(self) -> None:
        """What stopping takes once the listener is closed: by default, stop the children."""
        await MultiService.stopService(self)  # type: ignore[misc]
