# -*- test-case-name: tests.agent.test_backend,tests.protocols.test_pb -*-
"""
An island's devices as a gateway reports them: switch datapath ids and the
links between their ports, normalised, and the default island.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DPID = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")
_MAX_PORT = 0xFFFFFF00


def normalise_dpid(text: object) -> str:
    """
    Normalise a datapath id to eight lower-case hex pairs joined by colons.

    Accepts C{00:00:..:01}, or 16 hex digits with an optional C{0x} prefix.

    @raise ValueError: if C{text} is not a datapath id.
    """
    if not isinstance(text, str):
        raise ValueError(f"datapath id must be a string, not {type(text).__name__}")
    value = text.strip().strip('"').lower()
    if value.startswith("0x"):
        value = value[2:]
    if re.fullmatch(r"[0-9a-f]{16}", value):
        value = ":".join(value[i:i + 2] for i in range(0, 16, 2))
    if not _DPID.match(value):
        raise ValueError(f"not a datapath id: {text[:40]!r}")
    return value


def _endpoint(text: str) -> tuple[str, int]:
    dpid, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= _MAX_PORT:
        raise ValueError(f"link end {text[:60]!r} is not 'DPID:port'")
    return normalise_dpid(dpid), int(port)


def normalise_link(text: object) -> str:
    """
    Normalise a link C{DPID:port-DPID:port}.

    @raise ValueError: if C{text} is not a link.
    """
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"link {str(text)[:80]!r} is not 'DPID:port-DPID:port'")
    ends = [_endpoint(part.strip()) for part in text.split("-")]
    return "-".join(f"{dpid}:{port}" for dpid, port in ends)


@dataclass(frozen=True)
class Inventory:
    """The island's switches and links, as L{IGatewayBackend.switches}/C{links} report them."""

    switches: tuple[str, ...]
    links: tuple[str, ...]

    @classmethod
    def from_config(cls, switches: object, links: object) -> "Inventory":
        """
        Build an inventory from configuration lists, normalising every entry.

        @raise ValueError: for anything that is not a datapath id or link, or
            a link whose ends are not among the switches.
        """
        if not isinstance(switches, list) or not isinstance(links, list):
            raise ValueError("inventory switches and links must be lists of strings")
        dpids = tuple(dict.fromkeys(normalise_dpid(s) for s in switches))
        normal = tuple(dict.fromkeys(normalise_link(link) for link in links))
        known = set(dpids)
        for link in normal:
            for end in link.split("-"):
                if end.rpartition(":")[0] not in known:
                    raise ValueError(f"link {link} names a switch that is not in the inventory")
        return cls(dpids, normal)


DEFAULT_SWITCHES: tuple[str, ...] = (
    "00:00:00:00:00:00:00:01",
    "00:00:00:00:00:00:00:02",
    "00:00:00:00:00:00:00:03",
    "00:00:00:00:00:00:00:04",
)
"""The DPIDs of the default island's four OpenFlow switches."""

DEFAULT_LINKS: tuple[str, ...] = (
    "00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:02:1",
    "00:00:00:00:00:00:00:02:2-00:00:00:00:00:00:00:03:1",
    "00:00:00:00:00:00:00:03:2-00:00:00:00:00:00:00:04:1",
    "00:00:00:00:00:00:00:04:2-00:00:00:00:00:00:00:01:2",
    "00:00:00:00:00:00:00:01:3-00:00:00:00:00:00:00:03:3",
)
"""The default island's five links, as C{DPID:port-DPID:port}: a ring of four and one diagonal."""

DEFAULT_INVENTORY = Inventory(DEFAULT_SWITCHES, DEFAULT_LINKS)
"""Four switches in a ring plus one diagonal link, used when the configuration names no inventory."""


def link_ends(link: str) -> tuple[str, str]:
    """Return the two DPIDs a C{DPID:port-DPID:port} link joins."""
    left, _, right = link.partition("-")
    return left.rpartition(":")[0], right.rpartition(":")[0]
