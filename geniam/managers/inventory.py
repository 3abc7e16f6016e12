# -*- test-case-name: tests.managers.test_island,tests.loopback.test_island_agent -*-
"""
The island's inventory: its switches and links (the seed's C{getSws} and
C{getLinks}), as configured and refreshed from the gateway when it answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.errors import GeniCode, GeniError


@dataclass(frozen=True)
class KnownInventory:
    """
    The island's devices as this manager knows them (the agent's own
    device inventory is L{geniam.gateway.inventory.Inventory}).

    @ivar switches: switch DPIDs (C{00:00:00:00:00:00:00:01}).
    @ivar links: links as C{DPID:port-DPID:port}.
    @ivar confirmed: when the gateway last reported them, or None if they
        come from the configuration alone.
    """

    switches: tuple[str, ...]
    links: tuple[str, ...]
    confirmed: float | None = None


def string_list(value: object, what: str) -> tuple[str, ...]:
    """
    Return a gateway's answer as a tuple of strings.

    @raise GeniError: RPCERROR unless it is a list of strings.
    """
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise GeniError(GeniCode.RPCERROR, f"the gateway returned malformed {what}")
    return tuple(value)


class InventoryCache:
    """
    The last known inventory, refreshed from the gateway at most every
    C{ttl} seconds (and at most every C{retry_delay} seconds after a failed
    attempt), never while the gateway reports no connection.

    @param switches: the switch DPIDs known before the gateway answers.
    @param links: the links known before the gateway answers.
    @param clock: the clock for the refresh times.
    @param ask: calls a gateway verb (C{get_switches}, C{get_links}),
        raising L{GeniError} when it fails.
    @param online: False while the gateway reports no connection.
    @param background: runs a refresh without waiting for it.
    """

    log = Logger()

    def __init__(
        self,
        switches: Sequence[str],
        links: Sequence[str],
        *,
        clock: IReactorTime,
        ttl: float,
        retry_delay: float,
        ask: Callable[[str], Awaitable[Any]],
        online: Callable[[], bool],
        background: Callable[[Coroutine[Any, Any, Any], str], None],
    ) -> None:
        self._inventory = KnownInventory(tuple(switches), tuple(links))
        self._clock = clock
        self._ttl = ttl
        self._retry_delay = retry_delay
        self._ask = ask
        self._online = online
        self._background = background
        self._attempt: float | None = None
        self._waiters: list[Deferred[KnownInventory]] = []
        self._refreshing = False

    def get(self) -> Deferred[KnownInventory]:
        """
        Fire with the inventory; while the first refresh from the gateway
        runs, with its outcome.
        """
        self.refresh()
        if self._refreshing and self._inventory.confirmed is None:
            d: Deferred[KnownInventory] = Deferred()
            self._waiters.append(d)
            return d
        return succeed(self._inventory)

    def forget_attempt(self) -> None:
        """Let the next L{refresh} ask the gateway at once (it has just come back)."""
        self._attempt = None

    def refresh(self) -> None:
        """Ask the gateway for its inventory in the background if it is due."""
        now = self._clock.seconds()
        if self._refreshing:
            return
        if self._inventory.confirmed is not None and now - self._inventory.confirmed < self._ttl:
            return
        if self._attempt is not None and now - self._attempt < self._retry_delay:
            return
        if not self._online():
            return
        self._refreshing = True
        self._attempt = now
        self._background(self._refresh(), "inventory refresh")

    async def _refresh(self) -> None:
        try:
            switches = string_list(await self._ask("get_switches"), "switches")
            links = string_list(await self._ask("get_links"), "links")
            self._inventory = KnownInventory(switches, links, self._clock.seconds())
        except GeniError as e:
            self.log.warn("could not refresh the island inventory from the gateway: {error}", error=e.output)
        finally:
            self._refreshing = False
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(self._inventory)
