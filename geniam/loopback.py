# -*- test-case-name: tests.test_am_loopback -*-
"""
A whole federation on 127.0.0.1: a development trust domain, aggregate
managers with simulated gateways, and clients acting as its users.

C{geniam demo} runs one of these; so do the end-to-end tests, with a
L{twisted.internet.task.Clock} for time and the real reactor for I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geniam.agent.simulated import SimulatedGateway
from geniam.client import AMClient
from geniam.store.sqlite import SQLiteStore
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from geniam.trust.domain import TrustDomain
from geniam.trust.mint import slice_credential, user_credential

DAY = 86400.0


@dataclass
class LoopbackFederation:
    """
    Aggregates and users of one development trust domain, on loopback.

    @ivar folder: where the trust domain and the databases live.
    @ivar reactor: does the I/O.
    @ivar clock: gives the time (the reactor unless a test passes a Clock).
    """

    folder: Path
    reactor: Any
    clock: Any = None
    aggregate_names: tuple[str, ...] = ("am1",)
    user_names: tuple[str, ...] = ("alice",)
    authority: str = "geniam:demo"
    allocation_ttl: float = 172800.0
    domain: TrustDomain = field(init=False)
    aggregates: dict[str, AggregateService] = field(init=False, default_factory=dict)
    gateways: dict[str, SimulatedGateway] = field(init=False, default_factory=dict)
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

    def build_aggregate(self, name: str) -> AggregateService:
        """Build (not start) the aggregate C{name} on a free loopback port."""
        identity = self.domain.aggregate(name)
        trust = ServerTrust(identity, self.domain.roots(), self.domain.roots_dir, self.domain)
        store = SQLiteStore(str(self.folder / f"{name}.sqlite"), reactor=self.reactor)
        gateway = self.gateways.setdefault(name, SimulatedGateway(clock=self.clock))
        return AggregateService(
            self.reactor, trust, store, gateway, 0, "127.0.0.1", clock=self.clock, allocation_ttl=self.allocation_ttl
        )

    async def start(self) -> None:
        """Start every aggregate and wait until each listens."""
        for name in self.aggregate_names:
            service = self.build_aggregate(name)
            self.aggregates[name] = service
            service.startService()
            await service.when_started()

    async def stop(self) -> None:
        """Close clients and stop every aggregate."""
        for client in self._clients:
            await client.close()
        for service in self.aggregates.values():
            await service.stopService()

    def url(self, aggregate: str) -> str:
        """The AM API v3 URL of an aggregate."""
        return self.aggregates[aggregate].url

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

    def client(self, user: str, aggregate: str, credentials: tuple[str, ...] = ()) -> AMClient:
        """A client calling C{aggregate} as C{user}."""
        client = AMClient(
            self.reactor, self.url(aggregate), self.domain.user(user), self.domain.roots(), credentials
        )
        self._clients.append(client)
        return client
