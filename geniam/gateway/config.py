# -*- test-case-name: tests.agent.test_backend,tests.loopback.test_island_agent,tests.protocols.test_pb -*-
"""
The one configuration of an island gateway: the SSH keys of the users
allowed on it, the controller its TCP proxy forwards to and the VLAN map.

The aggregate manager builds it from what a booking needs and reads it from
the gateway's C{state()} reports; the gateway agent keeps it in its state
file and reports it; the in-process gateway holds it. Its plain-data form
(L{GatewayConfig.to_wire}) is what crosses the Perspective Broker link and
what the state file holds; L{GatewayConfig.from_wire} is the one place that
form is validated (with the field validators of L{geniam.gatewayconfig}).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import canonical_controller, validate_ssh_keys, validate_vlan_map

MAX_GATEWAY_KEYS = 256
"""At most this many SSH keys are authorised on a gateway at once."""

MAX_GATEWAY_KEY_CHARS = 256 * 1024
"""At most this many characters of SSH keys in total (keeps PB messages far below Banana's 640 KiB)."""

WIRE_FIELDS = frozenset({"users", "proxy", "vlans"})
"""The fields of the plain-data form."""


class Wanted(Protocol):
    """What a booking says it needs on the gateway (see L{geniam.booking.Booking})."""

    @property
    def ssh_keys(self) -> tuple[str, ...]: ...

    @property
    def controller(self) -> str | None: ...

    @property
    def vlan_map(self) -> Mapping[str, str]: ...


def check_user_limits(users: Sequence[str]) -> None:
    """
    Refuse a set of authorised keys larger than the gateway accepts.

    @raise GeniError: REFUSED if there are more than L{MAX_GATEWAY_KEYS} keys
        or more than L{MAX_GATEWAY_KEY_CHARS} characters of keys.
    """
    if len(users) > MAX_GATEWAY_KEYS:
        raise GeniError(GeniCode.REFUSED, f"the gateway authorises at most {MAX_GATEWAY_KEYS} SSH keys")
    if sum(len(k) for k in users) > MAX_GATEWAY_KEY_CHARS:
        raise GeniError(GeniCode.REFUSED, f"the gateway's SSH keys may total at most {MAX_GATEWAY_KEY_CHARS} characters")


@dataclass(frozen=True)
class GatewayConfig:
    """
    A configuration of the gateway: what it holds, or what a booking needs.

    @ivar users: the authorised SSH public keys, in the order they were added.
    @ivar proxy: the controller C{host:port} the proxy forwards to, or C{""}.
    @ivar vlans: the VLAN map C{{testbed VLAN: island VLAN}} (decimal strings, or C{0xffff}).
    """

    users: tuple[str, ...] = ()
    proxy: str = ""
    vlans: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, booking: Wanted) -> "GatewayConfig":
        """The configuration C{booking} needs during its slot (its values were validated when it was requested)."""
        return cls(tuple(booking.ssh_keys), booking.controller or "", dict(booking.vlan_map))

    def to_wire(self) -> dict[str, Any]:
        """Return the plain-data form: C{{"users": [...], "proxy": str, "vlans": {...}}}."""
        return {"users": list(self.users), "proxy": self.proxy, "vlans": dict(self.vlans)}

    @classmethod
    def from_wire(cls, data: object, extra: Iterable[str] = ()) -> "GatewayConfig":
        """
        Validate and normalise the plain-data form.

        @param extra: further fields allowed (and ignored), such as the state file's C{version}.
        @raise GeniError: BADARGS if any part is malformed, REFUSED if there
            are more keys than a gateway accepts.
        """
        if not isinstance(data, dict) or set(data) - WIRE_FIELDS - set(extra):
            raise GeniError(GeniCode.BADARGS, "gateway state must be a struct with users, proxy and vlans")
        users = validate_ssh_keys(data.get("users", []), MAX_GATEWAY_KEYS, "gateway state users")
        proxy = data.get("proxy", "")
        if proxy:
            proxy = canonical_controller(proxy)
        elif proxy != "":
            raise GeniError(GeniCode.BADARGS, "gateway state: proxy must be 'host:port' or ''")
        config = cls(users, proxy, validate_vlan_map(data.get("vlans", {})))
        check_user_limits(config.users)
        return config

    @classmethod
    def from_report(cls, report: object, who: str = "the gateway") -> "GatewayConfig":
        """
        Read what a gateway reports it holds (L{from_wire}).

        @raise GeniError: ERROR naming C{who} if the report is malformed.
        """
        try:
            return cls.from_wire(report)
        except GeniError as e:
            raise GeniError(GeniCode.ERROR, f"{who} reported a malformed state: {e.output}") from None

    def with_users(self, keys: Iterable[str]) -> "GatewayConfig":
        """This configuration with C{keys} added (order kept, duplicates dropped), within the gateway's limits."""
        users = tuple(dict.fromkeys([*self.users, *keys]))
        check_user_limits(users)
        return GatewayConfig(users, self.proxy, self.vlans)

    def without_users(self, keys: Iterable[str]) -> "GatewayConfig":
        """This configuration without C{keys}."""
        gone = set(keys)
        return GatewayConfig(tuple(k for k in self.users if k not in gone), self.proxy, self.vlans)

    def with_proxy(self, controller: str) -> "GatewayConfig":
        """This configuration with the proxy to C{controller} (C{""}: none)."""
        return GatewayConfig(self.users, controller, self.vlans)

    def with_vlans(self, vlans: Mapping[str, str]) -> "GatewayConfig":
        """This configuration with the VLAN map C{vlans} (empty: none)."""
        return GatewayConfig(self.users, self.proxy, dict(vlans))

    @property
    def empty(self) -> bool:
        """True for the default configuration: no users, no proxy, no VLAN map."""
        return not self.users and not self.proxy and not self.vlans

    def describe(self) -> str:
        """A short summary for the log."""
        return f"{len(self.users)} SSH key(s), proxy {self.proxy or 'none'}, VLAN map {dict(self.vlans) or 'none'}"
