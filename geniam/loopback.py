# -*- test-case-name: tests.loopback.test_am,tests.loopback.test_am_agent,tests.test_demo,tests.loopback.test_sm,tests.loopback.test_sm_faults -*-
"""
A whole federation on 127.0.0.1: a development trust domain, aggregate
managers, their island gateways, optionally a slice manager in front of
them all, and clients acting as its users.

Each aggregate's gateway is either simulated in process (the default) or,
with C{with_agents}, a real gateway agent service (C{twistd geniam-agent}
with its simulated back end, its state file in the federation's folder)
that the aggregate controls over Perspective Broker on mutual TLS, as
C{twistd geniam-am --agent} does.

With C{slice_manager} a slice manager (C{twistd geniam-sm}) with its own
identity from the domain and its own credential (a user credential about
itself, as C{--credential} gives it) forwards to every aggregate that has
listened (by URN and URL, or by URL only with C{sm_knows_urns} false), and
keeps its undo journal in C{<folder>/<name>-data}. Users reach the
aggregates through it with their slice credentials delegated to it
(L{LoopbackFederation.delegated_slice_credential}).

An aggregate stopped with L{LoopbackFederation.stop_aggregate} starts
again on the same port with the same database, so a slice manager finds
it where it was.

C{geniam demo} runs one of these; so do the end-to-end tests, with a
L{twisted.internet.task.Clock} for time and the real reactor for I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred

from geniam.agent.options import AgentOptions
from geniam.tap.agent import make_agent_service
from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import DEFAULT_ALLOCATION_TTL
from geniam.client import AMClient, credential_struct
from geniam.gatewayconfig import LOOPBACK_NETWORKS, ControllerPolicy
from geniam.managers.slice import SliceManagerSettings
from geniam.managers.transactions import DEFAULT_TRANSACTION_TTL
from geniam.protocols.pbclient import make_gateway_agent
from geniam.store.sqlite import SQLiteStore
from geniam.managers.operators import Operators
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from geniam.tap.sm import SliceManagerService
from geniam.trust.domain import TrustDomain
from geniam.trust.mint import delegate_credential, slice_credential, user_credential

DAY = 86400.0


def agent_name(aggregate: str) -> str:
    """The trust domain name of the gateway agent of C{aggregate}: C{<aggregate>gw}."""
    return f"{aggregate}gw"


@dataclass
class LoopbackFederation:
    """
    Aggregates and users of one development trust domain, on loopback.

    @ivar folder: where the trust domain and the databases live.
    @ivar reactor: does the I/O.
    @ivar clock: gives the time (the reactor unless a test passes a Clock).
    @ivar transaction_ttl: how long the aggregates keep a transaction open.
    @ivar with_agents: run a gateway agent service per aggregate, reached
        over PB, instead of an in-process simulated gateway.
    @ivar agent_retry: seconds between the aggregates' reconnection
        attempts to their agents (None: the PB client's own back-off).
    @ivar gateways: each aggregate's L{IGatewayAgent} (the PB client with agents).
    @ivar agents: each aggregate's running gateway agent service.
    @ivar agent_ports: the port each aggregate's agent listens on.
    @ivar slice_manager: the trust domain name of a slice manager to run in
        front of every aggregate (C{None}: none).
    @ivar sm_settings: the slice manager's timeouts and bounds.
    @ivar sm_knows_urns: whether the slice manager is told each aggregate's
        URN with its URL (C{--aggregate URN=URL}) or only its URL.
    @ivar sm: the running slice manager, if any.
    @ivar controller_networks: the networks the aggregates and agents allow
        controllers in besides public addresses (loopback: the federation and
        its users share one machine).
    @ivar agent_args: further flags for every agent (e.g. C{--backend command --config FILE}).
    @ivar aggregate_ports: the port each aggregate listens (or listened) on.
    @ivar status: give every aggregate and the slice manager a status
        listener (the booking calendar) on a free loopback port.
    """

    folder: Path
    reactor: Any
    clock: Any = None
    aggregate_names: tuple[str, ...] = ("am1",)
    user_names: tuple[str, ...] = ("alice",)
    authority: str = "geniam:demo"
    allocation_ttl: float = DEFAULT_ALLOCATION_TTL
    transaction_ttl: float = DEFAULT_TRANSACTION_TTL
    with_agents: bool = False
    agent_retry: float | None = None
    slice_manager: str | None = None
    sm_settings: SliceManagerSettings = field(default_factory=SliceManagerSettings)
    controller_networks: tuple[str, ...] = tuple(str(n) for n in LOOPBACK_NETWORKS)
    agent_args: tuple[str, ...] = ()
    sm_knows_urns: bool = True
    status: bool = False
    operator_names: tuple[str, ...] = ()
    domain: TrustDomain = field(init=False)
    aggregates: dict[str, AggregateService] = field(init=False, default_factory=dict)
    gateways: dict[str, Any] = field(init=False, default_factory=dict)
    agents: dict[str, MultiService] = field(init=False, default_factory=dict)
    agent_ports: dict[str, int] = field(init=False, default_factory=dict)
    aggregate_ports: dict[str, int] = field(init=False, default_factory=dict)
    sm: SliceManagerService | None = field(init=False, default=None)
    _clients: list[AMClient] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.clock is None:
            self.clock = self.reactor
        self.folder = Path(self.folder)
        self.domain = TrustDomain.open_or_create(self.folder / "trust", self.authority, reactor=self.clock)
        for name in self.user_names:
            self.domain.ensure_user(name, f"{name}@example.org")
        for name in self.aggregate_names:
            self.domain.ensure_aggregate(name)
            if self.with_agents:
                self.domain.ensure_aggregate(agent_name(name))
        if self.slice_manager is not None:
            self.domain.ensure_aggregate(self.slice_manager)

    def agent_urn(self, aggregate: str) -> str:
        """The URN of the gateway agent of C{aggregate}."""
        return self.domain.aggregate_urn(agent_name(aggregate))

    def build_agent(self, aggregate: str, port: int = 0) -> MultiService:
        """
        Build (not start) the gateway agent of C{aggregate}: the agent
        service with the simulated back end, on 127.0.0.1, letting in only
        that aggregate's certificate.
        """
        name = agent_name(aggregate)
        options = AgentOptions()
        options.parseOptions(
            [
                "--port", str(port),
                "--interface", "127.0.0.1",
                "--data-dir", str(self.folder / f"{name}-data"),
                "--trust-roots", str(self.domain.roots_dir),
                "--certificate", str(self.domain.cert_path("aggregates", name)),
                "--private-key", str(self.domain.key_path("aggregates", name)),
                "--backend", "simulated",
                "--allow", self.domain.aggregate_urn(aggregate),
                *(f"--controller-network={network}" for network in self.controller_networks),
                *self.agent_args,
            ]
        )
        return make_agent_service(options, self.reactor, clock=self.clock)

    async def start_agent(self, aggregate: str) -> int:
        """
        Start the gateway agent of C{aggregate} (on the port it had before,
        if it ran already) and return its port.
        """
        service = self.build_agent(aggregate, self.agent_ports.get(aggregate, 0))
        service.startService()
        self.agents[aggregate] = service
        listener = next(s for s in service if isinstance(s, StreamServerEndpointService))
        port: Any = await listener._waitingForPort
        self.agent_ports[aggregate] = int(port.getHost().port)
        return self.agent_ports[aggregate]

    async def stop_agent(self, aggregate: str) -> None:
        """Stop the gateway agent of C{aggregate} (its applied state stays in its state file)."""
        service = self.agents.pop(aggregate, None)
        if service is not None and service.running:
            await service.stopService()

    def build_gateway(self, aggregate: str) -> Any:
        """
        The gateway a newly built aggregate drives: a new PB client to its
        agent, or the aggregate's one in-process simulated gateway.
        """
        if not self.with_agents:
            return self.gateways.setdefault(aggregate, InProcessGateway(clock=self.clock))
        retry = self.agent_retry
        gateway = make_gateway_agent(
            self.reactor,
            f"127.0.0.1:{self.agent_ports[aggregate]}",
            self.domain.aggregate(aggregate),
            self.domain.roots(),
            expected_urn=self.agent_urn(aggregate),
            retry_policy=(lambda attempt: retry) if retry is not None else None,
            clock=self.clock,
        )
        self.gateways[aggregate] = gateway
        return gateway

    def build_aggregate(self, name: str, port: int = 0) -> AggregateService:
        """Build (not start) the aggregate C{name} on loopback C{port} (0: a free one)."""
        identity = self.domain.aggregate(name)
        trust = ServerTrust(identity, self.domain.roots(), self.domain.roots_dir, self.domain)
        store = SQLiteStore(str(self.folder / f"{name}.sqlite"), reactor=self.reactor)
        gateway = self.build_gateway(name)
        return AggregateService(
            self.reactor,
            trust,
            store,
            gateway,
            port,
            "127.0.0.1",
            clock=self.clock,
            allocation_ttl=self.allocation_ttl,
            transaction_ttl=self.transaction_ttl,
            controller_policy=ControllerPolicy.allowing(self.controller_networks),
            status_port=0 if self.status else None,
            operators=Operators.named(self.domain.user(n).gid.urn or "" for n in self.operator_names),
        )

    async def start_aggregate(self, name: str, connect_timeout: float = 30.0) -> AggregateService:
        """
        Build and start the aggregate C{name} (on the port it had before,
        if it ran already); wait until it listens and, with agents, until
        it has logged in to its agent and read the island's inventory.
        """
        service = self.build_aggregate(name, self.aggregate_ports.get(name, 0))
        self.aggregates[name] = service
        service.startService()
        await service.when_started()
        self.aggregate_ports[name] = int(urlsplit(service.url).port or 0)
        if self.with_agents:
            connected: Deferred[None] = self.gateways[name].when_connected()
            connected.addTimeout(connect_timeout, self.reactor)
            await connected
            await service.resource_manager.inventory()
        return service

    async def stop_aggregate(self, name: str) -> None:
        """Stop the aggregate C{name} (its bookings stay in its database; it starts again on its port)."""
        service = self.aggregates.get(name)
        if service is not None and service.running:
            await service.stopService()

    def aggregate_url(self, name: str) -> str:
        """The AM API v3 URL of the aggregate C{name}, which has listened (it may be stopped now)."""
        return f"https://127.0.0.1:{self.aggregate_ports[name]}/"

    def sm_credential(self, lifetime: float = 30 * DAY) -> dict[str, str]:
        """The slice manager's own credential (owner and target: the slice manager), as a v3 struct."""
        if self.slice_manager is None:
            raise ValueError("this federation has no slice manager")
        gid = self.domain.aggregate(self.slice_manager).gid
        return credential_struct(user_credential(self.domain.ca, gid, self.clock.seconds() + lifetime))

    def build_slice_manager(self, port: int = 0) -> SliceManagerService:
        """
        Build (not start) the slice manager, forwarding to every aggregate
        that has listened, running or not; a new one built on the same
        federation resumes the undo journal of the one before.
        """
        if self.slice_manager is None:
            raise ValueError("this federation has no slice manager")
        identity = self.domain.aggregate(self.slice_manager)
        trust = ServerTrust(identity, self.domain.roots(), self.domain.roots_dir, self.domain)
        peers: list[tuple[str | None, str]] = [
            (self.aggregates[name].urn if self.sm_knows_urns else None, self.aggregate_url(name))
            for name in self.aggregate_ports
        ]
        return SliceManagerService(
            self.reactor,
            trust,
            peers,
            [self.sm_credential()],
            port,
            "127.0.0.1",
            settings=self.sm_settings,
            clock=self.clock,
            data_dir=self.sm_data_dir,
            status_port=0 if self.status else None,
        )

    @property
    def sm_data_dir(self) -> Path:
        """The slice manager's data folder (its undo journal)."""
        return self.folder / f"{self.slice_manager}-data"

    async def start_slice_manager(self) -> SliceManagerService:
        """Build and start the slice manager; wait until it listens and has asked every aggregate's version."""
        service = self.build_slice_manager()
        self.sm = service
        service.startService()
        await service.when_started()
        return service

    async def start(self) -> None:
        """
        Start every agent (with agents), then every aggregate, then the
        slice manager (if any), and wait until each is ready.
        """
        if self.with_agents:
            for name in self.aggregate_names:
                await self.start_agent(name)
        for name in self.aggregate_names:
            await self.start_aggregate(name)
        if self.slice_manager is not None:
            await self.start_slice_manager()

    async def stop(self) -> None:
        """Close clients, stop the slice manager, every aggregate, then every agent."""
        for client in self._clients:
            await client.close()
        if self.sm is not None and self.sm.running:
            await self.sm.stopService()
        for service in self.aggregates.values():
            if service.running:
                await service.stopService()
        for name in list(self.agents):
            await self.stop_agent(name)

    def gateway_state(self, aggregate: str) -> Deferred[dict[str, Any]]:
        """Fire with what the gateway of C{aggregate} has applied now (asked over PB, with agents)."""
        state: Deferred[dict[str, Any]] = self.gateways[aggregate].state()
        return state

    def url(self, server: str) -> str:
        """The AM API v3 URL of an aggregate, or of the slice manager when C{server} is its name."""
        if self.sm is not None and server == self.slice_manager:
            return self.sm.url
        service = self.aggregates[server]
        return service.url if service.port is not None else self.aggregate_url(server)

    def calendar_url(self, server: str) -> str:
        """The booking calendar's URL of an aggregate, or of the slice manager when C{server} is its name."""
        service = self.sm if self.sm is not None and server == self.slice_manager else self.aggregates[server]
        if service is None or service.status is None:
            raise ValueError(f"{server} has no status listener (start the federation with status=True)")
        return service.status.url

    def slice_urn(self, name: str) -> str:
        """The URN of a slice of this domain."""
        return f"urn:publicid:IDN+{self.domain.authority}+slice+{name}"

    def user_credential(self, user: str, lifetime: float = 30 * DAY) -> str:
        """A user credential for C{user}, signed by the domain's authority."""
        return user_credential(self.domain.ca, self.domain.user(user).gid, self.clock.seconds() + lifetime)

    def slice_credential(self, slice_name: str, owner: str, lifetime: float = 30 * DAY) -> str:
        """A slice credential for C{owner} on C{slice_name}."""
        now = self.clock.seconds()
        return slice_credential(
            self.domain.ca, self.domain.user(owner).gid, self.slice_urn(slice_name), now + lifetime, now=now
        )

    def delegated_slice_credential(self, slice_name: str, owner: str, lifetime: float = 30 * DAY) -> str:
        """
        C{owner}'s slice credential on C{slice_name}, delegated by C{owner}
        to the slice manager (as C{geniam authority delegate} writes it).
        """
        if self.slice_manager is None:
            raise ValueError("this federation has no slice manager")
        return delegate_credential(
            self.slice_credential(slice_name, owner, lifetime),
            self.domain.user(owner),
            self.domain.aggregate(self.slice_manager).gid,
        )

    def client(self, user: str, server: str, credentials: tuple[str, ...] = ()) -> AMClient:
        """A client calling C{server} (an aggregate or the slice manager) as C{user}."""
        client = AMClient(self.reactor, self.url(server), self.domain.user(user), self.domain.roots(), credentials)
        self._clients.append(client)
        return client
