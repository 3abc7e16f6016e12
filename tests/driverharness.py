"""
Several aggregate-manager processes' islands on one PostgreSQL database,
each with its own connection pool, driver lease and election on the real
reactor, all in front of one simulated gateway that records which member
sent each change. The driver tests and the failover benchmark share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from geniam.agent.inprocess import InProcessGateway
from geniam.booking.values import Booking, Slot, UserKeys
from geniam.gatewayconfig import ControllerPolicy
from geniam.managers.driver import GatewayDriver
from geniam.managers.island import IslandResourceManager
from geniam.store.pglease import PostgresLease, driver_lock, lock_ids
from geniam.store.postgres import PostgresStore

AUTHORITY = "geni.example.net:island"
ISLAND = "default"
SLICE = "urn:publicid:IDN+geni.example.net+slice+exp1"
ALICE = "urn:publicid:IDN+geni.example.net+user+alice"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGtestkeyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA alice@lab"
CONTROLLER = "192.0.2.10:6633"
VLANS = {"10": "0xffff"}
CHANGES = frozenset({"set_user_auth", "rem_user_auth", "set_tcp_proxy", "rem_tcp_proxy", "set_ovs", "rem_ovs", "reset"})
"""The gateway methods that change it."""


@dataclass
class Sent:
    """One change the gateway received: from which member, what, and when (reactor seconds)."""

    member: int
    verb: str
    when: float


class RecordingGateway:
    """One member's view of the shared gateway: every change is recorded with the member's number."""

    def __init__(self, shared: InProcessGateway, member: int, sent: list[Sent], clock: IReactorTime, waiters: list[Any]) -> None:
        self._shared = shared
        self._member = member
        self._sent = sent
        self._clock = clock
        self._waiters = waiters

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._shared, name)
        if name not in CHANGES:
            return method

        def send(*args: Any) -> Any:
            self._sent.append(Sent(self._member, name, self._clock.seconds()))
            for verb, d in list(self._waiters):
                if verb == name:
                    self._waiters.remove((verb, d))
                    d.callback(self._sent[-1])
            return method(*args)

        return send


@dataclass
class Member:
    """One process's parts."""

    number: int
    store: PostgresStore
    driver: GatewayDriver
    manager: IslandResourceManager
    late: list[tuple[str, float]] = field(default_factory=list)
    alive: bool = True


class SharedIsland:
    """C{size} members on C{dsn}, polling for the driver's role every C{poll} seconds on C{reactor}."""

    def __init__(self, reactor: Any, dsn: str, poll: float) -> None:
        self.reactor = reactor
        self.dsn = dsn
        self.poll = poll
        self.gateway = InProcessGateway()
        self.sent: list[Sent] = []
        self.members: list[Member] = []
        self._change_waiters: list[tuple[str, Deferred[Sent]]] = []
        self._driver_waiters: list[Deferred[Member]] = []
        self._late_waiters: list[Deferred[tuple[Member, str, float]]] = []

    async def add(self) -> Member:
        """Start one more member: store, election (its first try), island manager."""
        number = len(self.members)
        store = PostgresStore(self.dsn, island=ISLAND, reactor=self.reactor, pool_size=2)
        await store.start()
        driver = GatewayDriver(PostgresLease(self.reactor, self.dsn, ISLAND), self.reactor, self.poll)
        gateway = RecordingGateway(self.gateway, number, self.sent, self.reactor, self._change_waiters)
        manager = IslandResourceManager(
            store, gateway, self.reactor, AUTHORITY, sweep_interval=30,
            controller_policy=ControllerPolicy.allowing(["192.0.2.0/24"]), driver=driver,
        )
        member = Member(number, store, driver, manager)
        manager.observe_gateway_work(lambda edge, s: self._late(member, edge, s), lambda: None)
        driver.observers.append(lambda driving: self._gained(member) if driving else None)
        self.members.append(member)
        await driver.start()
        await manager.start()
        return member

    def _late(self, member: Member, edge: str, seconds: float) -> None:
        member.late.append((edge, seconds))
        waiters, self._late_waiters = self._late_waiters, []
        for d in waiters:
            d.callback((member, edge, seconds))

    def next_boundary_done(self) -> Deferred[tuple[Member, str, float]]:
        """Fire with the member, edge and lateness of the next slot start or end recorded done."""
        d: Deferred[tuple[Member, str, float]] = Deferred()
        self._late_waiters.append(d)
        return d

    def _gained(self, member: Member) -> None:
        waiters, self._driver_waiters = self._driver_waiters, []
        for d in waiters:
            d.callback(member)

    def next_driver(self) -> Deferred[Member]:
        """Fire with the next member to gain the driver's role."""
        d: Deferred[Member] = Deferred()
        self._driver_waiters.append(d)
        return d

    def next_change(self, verb: str) -> Deferred[Sent]:
        """Fire with the next change C{verb} the gateway receives."""
        d: Deferred[Sent] = Deferred()
        self._change_waiters.append((verb, d))
        return d

    def drivers(self) -> list[Member]:
        """The members that believe they drive."""
        return [m for m in self.members if m.alive and m.driver.driving]

    def lock_holders(self) -> list[int]:
        """The server process ids holding the island's driver lock, as the database shows them."""
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
                " AND classid::bigint = %s AND objid::bigint = %s",
                lock_ids(driver_lock(ISLAND)),
            )
            pids = [row[0] for row in cursor.fetchall()]
        connection.close()
        return pids

    def end_lease_session(self) -> None:
        """End the driver lock holder's database session, as C{pg_terminate_backend} by an administrator."""
        [pid] = self.lock_holders()
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        connection.close()

    async def crash(self, member: Member) -> None:
        """The member's process dies: its checks stop and its database sessions end (the lock is released)."""
        member.alive = False
        member.manager.stop()
        await member.driver.stop()

    async def provisioned(self, start: float, length: float) -> Booking:
        """Book and provision a slot through the last member (any member answers the API)."""
        manager = self.members[-1].manager
        b = await manager.allocate(SLICE, ALICE, "alice@example.net", Slot(start, start + length), credential_expires=start + 86400)
        [p] = await manager.provision([b.sliver_urn], users=[UserKeys(ALICE, (KEY,))], controller=CONTROLLER, vlan_map=VLANS)
        return p

    async def stop(self) -> None:
        """Stop every member and close its store."""
        for member in self.members:
            await member.manager.stop()
            await member.driver.stop()
            await member.store.stop()
