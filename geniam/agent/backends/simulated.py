# -*- test-case-name: tests.test_agent_backend -*-
"""
The simulated gateway back end: applies nothing to devices, remembers
everything.

The applied state lives in memory and in a JSON state file, replaced
atomically on every change, so a restarted agent reports what it had
applied before. The inventory is fixed by configuration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from geniam.agent.backend import (
    DEFAULT_INVENTORY,
    GatewayState,
    IGatewayBackend,
    Inventory,
    StateFile,
    add_users,
    remove_users,
)


@implementer(IGatewayBackend)
class SimulatedBackend:
    """
    An L{IGatewayBackend} that only records what it is asked to apply.
    """

    log = Logger()

    def __init__(self, state_file: StateFile, inventory: Inventory = DEFAULT_INVENTORY) -> None:
        """
        @param state_file: where the applied state persists.
        @param inventory: the switches and links reported.
        """
        self._file = state_file
        self._inventory = inventory
        self._state = GatewayState()

    async def _change(self, change: Callable[[GatewayState], GatewayState]) -> None:
        new = change(self._state)
        if new == self._state:
            return
        await self._file.save(new)
        self._state = new
        self.log.info(
            "simulated gateway now has {users} users, proxy {proxy!r}, {vlans} VLAN mappings",
            users=len(new.users),
            proxy=new.proxy,
            vlans=len(new.vlans),
        )

    def start(self) -> "Deferred[None]":
        """Load the persisted state (fails with L{StateFileError} if it is malformed)."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._state = self._file.load()

    def stop(self) -> "Deferred[None]":
        """Nothing runs, so nothing stops."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        return None

    def switches(self) -> "Deferred[list[str]]":
        """Fire with the configured switch DPIDs."""
        return Deferred.fromCoroutine(self._list(self._inventory.switches))

    def links(self) -> "Deferred[list[str]]":
        """Fire with the configured links."""
        return Deferred.fromCoroutine(self._list(self._inventory.links))

    async def _list(self, items: tuple[str, ...]) -> list[str]:
        return list(items)

    def set_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Add C{keys} to the authorised users."""
        return Deferred.fromCoroutine(self._change(lambda s: add_users(s, keys)))

    def rem_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Remove C{keys} from the authorised users."""
        return Deferred.fromCoroutine(self._change(lambda s: remove_users(s, keys)))

    def set_tcp_proxy(self, controller: str) -> "Deferred[None]":
        """Record the proxy to C{controller}."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayState(s.users, controller, s.vlans)))

    def rem_tcp_proxy(self) -> "Deferred[None]":
        """Record that no proxy runs."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayState(s.users, "", s.vlans)))

    def set_ovs(self, vlan_map: Mapping[str, str]) -> "Deferred[None]":
        """Record the VLAN map."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayState(s.users, s.proxy, dict(vlan_map))))

    def rem_ovs(self) -> "Deferred[None]":
        """Record that no VLAN map is applied."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayState(s.users, s.proxy, {})))

    def reset(self) -> "Deferred[None]":
        """Record the default configuration."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayState()))

    def state(self) -> "Deferred[GatewayState]":
        """Fire with the recorded state."""
        return Deferred.fromCoroutine(self._current())

    async def _current(self) -> GatewayState:
        return self._state
