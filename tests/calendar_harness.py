"""
A federation with booking calendars on loopback, for the calendar's
end-to-end tests: real TLS, real credentials, real SQLite, the status
listeners over plain HTTP on 127.0.0.1, and a L{Clock} for the time.
"""

from __future__ import annotations

import time
from datetime import datetime, time as clock_time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from geniam.client import value_of
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from tests.domains import copied_domain

BERLIN = ZoneInfo("Europe/Berlin")


def make_domain(folder: Path) -> None:
    """Make a trust domain with two aggregates, a slice manager and alice in C{folder}."""
    clock = Clock()
    clock.advance(time.time() - 3600)
    LoopbackFederation(folder, reactor, clock, aggregate_names=("am1", "am2"), user_names=("alice",), slice_manager="sm")


def tomorrow_at(now: float, hour: int, zone: Any = BERLIN) -> float:
    """POSIX seconds of C{hour}:00 tomorrow in C{zone}."""
    day = datetime.fromtimestamp(now, zone).date() + timedelta(days=1)
    return datetime.combine(day, clock_time(hour), tzinfo=zone).timestamp()


class CalendarHarness(TestCase):
    """Starts a federation with status listeners; books and deletes through the AM API as alice."""

    async def start(
        self, aggregates: tuple[str, ...] = ("am1",), slice_manager: str | None = None, with_agents: bool = False
    ) -> LoopbackFederation:
        folder = copied_domain(self, "calendar", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        federation = LoopbackFederation(
            folder,
            reactor,
            self.clock,
            aggregate_names=aggregates,
            user_names=("alice",),
            slice_manager=slice_manager,
            status=True,
            with_agents=with_agents,
            agent_retry=0.1 if with_agents else None,
        )
        await federation.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        self.fed = federation
        return federation

    def alice(self, server: str = "am1", slice_name: str = "exp1") -> Any:
        fed = self.fed
        credential = (
            fed.delegated_slice_credential(slice_name, "alice")
            if server == fed.slice_manager
            else fed.slice_credential(slice_name, "alice")
        )
        return fed.client("alice", server, (fed.user_credential("alice"), credential))

    async def book(self, start: float, end: float, server: str = "am1", **request: Any) -> list[str]:
        """Allocate C{[start, end)} as alice; return the sliver URNs."""
        struct = await self.alice(server).allocate(self.fed.slice_urn("exp1"), build_request(start, end, **request))
        value = value_of(struct)
        return [sliver["geni_sliver_urn"] for sliver in value["geni_slivers"]]

    async def delete(self, urns: list[str], server: str = "am1") -> None:
        """Delete slivers as alice."""
        value_of(await self.alice(server).delete(urns))

    async def fetch(self, url: str) -> tuple[int, dict[str, list[str]], bytes]:
        """GET C{url} over plain HTTP; the status, headers and body."""
        response = await Agent(reactor).request(b"GET", url.encode("ascii"))
        body = await readBody(response)
        headers = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
        return response.code, headers, body
