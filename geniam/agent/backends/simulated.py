# -*- test-case-name: tests.agent.test_backend,tests.agent.test_inprocess -*-
"""
The simulated gateway back end: applies nothing to devices, remembers
everything.

The applied state lives in memory and, when the back end has one, in a JSON
state file replaced atomically on every change, so a restarted agent
reports what it had applied before. The inventory is fixed by
configuration; a switch may be taken down (L{SimulatedBackend.break_switch})
to see what a broken island does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from zope.interface import implementer

from geniam.agent.backend import StateFile
from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gateway.inventory import DEFAULT_INVENTORY, Inventory, link_ends
from geniam.interfaces import IGatewayBackend


@implementer(IGatewayBackend)
class SimulatedBackend:
    """
    An L{IGatewayBackend} that only records what it is asked to apply.

    @ivar inventory: the island's switches and links, broken ones included.
    """

    log = Logger()

    def __init__(self, state_file: StateFile | None = None, inventory: Inventory = DEFAULT_INVENTORY) -> None:
        """
        @param state_file: where the applied state persists (None: in memory only).
        @param inventory: the switches and links reported.
        """
        self._file = state_file
        self.inventory = inventory
        self._state = GatewayConfig()
        self._broken: set[str] = set()

    @property
    def applied(self) -> GatewayConfig:
        """The configuration applied now."""
        return self._state

    def break_switch(self, dpid: str) -> None:
        """
        Take a switch down for good: it and its links leave the reported
        inventory, and C{set_ovs} fails with REFUSED until L{repair_switch}.
        """
        if dpid not in self.inventory.switches:
            raise GeniError(GeniCode.BADARGS, f"no switch {dpid!r} on this island")
        self._broken.add(dpid)

    def repair_switch(self, dpid: str) -> None:
        """Bring a switch taken down by L{break_switch} back."""
        self._broken.discard(dpid)

    async def _change(self, change: Callable[[GatewayConfig], GatewayConfig]) -> None:
        new = change(self._state)
        if new == self._state:
            return
        if self._file is not None:
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
        if self._file is not None:
            self._state = self._file.load()

    def stop(self) -> "Deferred[None]":
        """Nothing runs, so nothing stops."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        return None

    def switches(self) -> "Deferred[list[str]]":
        """Fire with the DPIDs of the switches that are up."""
        return Deferred.fromCoroutine(self._list([s for s in self.inventory.switches if s not in self._broken]))

    def links(self) -> "Deferred[list[str]]":
        """Fire with the links whose both switches are up."""
        up = [link for link in self.inventory.links if not self._broken.intersection(link_ends(link))]
        return Deferred.fromCoroutine(self._list(up))

    async def _list(self, items: list[str]) -> list[str]:
        return items

    def set_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Add C{keys} to the authorised users."""
        return Deferred.fromCoroutine(self._change(lambda s: s.with_users(keys)))

    def rem_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Remove C{keys} from the authorised users."""
        return Deferred.fromCoroutine(self._change(lambda s: s.without_users(keys)))

    def set_tcp_proxy(self, controller: str) -> "Deferred[None]":
        """Record the proxy to C{controller}."""
        return Deferred.fromCoroutine(self._change(lambda s: s.with_proxy(controller)))

    def rem_tcp_proxy(self) -> "Deferred[None]":
        """Record that no proxy runs."""
        return Deferred.fromCoroutine(self._change(lambda s: s.with_proxy("")))

    def set_ovs(self, vlan_map: Mapping[str, str]) -> "Deferred[None]":
        """Record the VLAN map; REFUSED while a switch is down."""
        return Deferred.fromCoroutine(self._change(lambda s: self._mapped(s, vlan_map)))

    def _mapped(self, state: GatewayConfig, vlan_map: Mapping[str, str]) -> GatewayConfig:
        if self._broken:
            down = ", ".join(sorted(self._broken))
            raise GeniError(GeniCode.REFUSED, f"cannot map VLANs: switch {down} unreachable")
        return state.with_vlans(vlan_map)

    def rem_ovs(self) -> "Deferred[None]":
        """Record that no VLAN map is applied."""
        return Deferred.fromCoroutine(self._change(lambda s: s.with_vlans({})))

    def reset(self) -> "Deferred[None]":
        """Record the default configuration."""
        return Deferred.fromCoroutine(self._change(lambda s: GatewayConfig()))

    def state(self) -> "Deferred[GatewayConfig]":
        """Fire with the recorded state."""
        return Deferred.fromCoroutine(self._current())

    async def _current(self) -> GatewayConfig:
        return self._state
