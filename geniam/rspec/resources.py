# -*- test-case-name: tests.rspec.test_advertisement -*-
"""
The island as RSpecs name it: switches (DPIDs), links and their URNs.

A switch is named by its OpenFlow datapath id, eight hex octets joined by
colons (C{00:00:00:00:00:00:00:01}); a link by its two ends,
C{DPID:port-DPID:port}. URNs are minted under the aggregate's authority::

  node       urn:publicid:IDN+<authority>+node+<dpid>
  interface  urn:publicid:IDN+<authority>+interface+<dpid>:<port>
  link       urn:publicid:IDN+<authority>+link+<dpid>:<port>-<dpid>:<port>
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from geniam.errors import GeniCode, GeniError
from geniam.urn import PREFIX, parse_urn

_DPID = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")
_HOST = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$")
_TOKEN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
MAX_PORT = 0xFFFFFF00
"""The largest physical OpenFlow port number (C{OFPP_MAX})."""


def parse_dpid(text: object) -> str:
    """
    Validate an OpenFlow datapath id and return it in lower case.

    @raise GeniError: BADARGS unless C{text} is eight hex octets joined by colons.
    """
    if not isinstance(text, str) or not _DPID.match(text.strip().lower()):
        raise GeniError(GeniCode.BADARGS, f"not a DPID (8 hex octets joined by ':'): {str(text)[:40]!r}")
    return text.strip().lower()


def _port(text: str, link: str) -> int:
    if not text.isascii() or not text.isdigit() or not 0 < int(text) <= MAX_PORT:
        raise GeniError(GeniCode.BADARGS, f"link {link[:80]!r}: bad port {text[:12]!r}")
    return int(text)


@dataclass(frozen=True, order=True)
class IslandLink:
    """A link between two switch ports of the island."""

    src_dpid: str
    src_port: int
    dst_dpid: str
    dst_port: int

    def __str__(self) -> str:
        return f"{self.src_dpid}:{self.src_port}-{self.dst_dpid}:{self.dst_port}"

    @property
    def ends(self) -> tuple[tuple[str, int], tuple[str, int]]:
        """The two C{(dpid, port)} ends."""
        return (self.src_dpid, self.src_port), (self.dst_dpid, self.dst_port)


def parse_link(text: object) -> IslandLink:
    """
    Parse C{DPID:port-DPID:port}.

    @raise GeniError: BADARGS for anything else.
    """
    if not isinstance(text, str) or len(text) > 128:
        raise GeniError(GeniCode.BADARGS, f"not a link 'DPID:port-DPID:port': {str(text)[:80]!r}")
    left, sep, right = text.strip().partition("-")
    if not sep:
        raise GeniError(GeniCode.BADARGS, f"not a link 'DPID:port-DPID:port': {text[:80]!r}")
    src, _, src_port = left.rpartition(":")
    dst, _, dst_port = right.rpartition(":")
    return IslandLink(parse_dpid(src), _port(src_port, text), parse_dpid(dst), _port(dst_port, text))


def node_urn(authority: str, dpid: str) -> str:
    """The component URN of a switch."""
    return f"{PREFIX}{authority}+node+{dpid}"


def interface_urn(authority: str, dpid: str, port: int) -> str:
    """The component URN of a switch port."""
    return f"{PREFIX}{authority}+interface+{dpid}:{port}"


def link_urn(authority: str, link: IslandLink) -> str:
    """The component URN of a link."""
    return f"{PREFIX}{authority}+link+{link}"


@dataclass(frozen=True)
class IslandResources:
    """
    What an island aggregate owns, as its RSpecs describe it.

    The constructor validates and normalises every field.

    @ivar am_urn: the aggregate's URN (C{component_manager_id} of its
        resources), e.g. C{urn:publicid:IDN+island.example+authority+am}.
    @ivar switches: the DPIDs of the island's switches, in order.
    @ivar links: the island's links (strings C{DPID:port-DPID:port} are
        accepted and parsed).
    @ivar hardware_type: the C{hardware_type} advertised for switches.
    @ivar sliver_type: the C{sliver_type} of the island booking.
    @ivar gateway_host: the host experimenters log in to (manifest
        C{login hostname}); C{None} leaves logins out of manifests.
    @ivar gateway_port: the SSH port of C{gateway_host}.
    """

    am_urn: str
    switches: tuple[str, ...] = ()
    links: tuple[IslandLink, ...] = ()
    hardware_type: str = "openflow-switch"
    sliver_type: str = "island"
    gateway_host: str | None = None
    gateway_port: int = 22
    _authority: str = field(init=False, repr=False, compare=False, default="")
    _ports: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        authority = parse_urn(self.am_urn).authority
        switches = tuple(dict.fromkeys(parse_dpid(s) for s in _as_list(self.switches, "switches")))
        links = tuple(
            dict.fromkeys(
                link if isinstance(link, IslandLink) else parse_link(link)
                for link in _as_list(self.links, "links")
            )
        )
        for name in ("hardware_type", "sliver_type"):
            if not isinstance(getattr(self, name), str) or not _TOKEN.match(getattr(self, name)):
                raise GeniError(GeniCode.BADARGS, f"{name} must be a short name, got {getattr(self, name)!r}")
        if self.gateway_host is not None and (
            not isinstance(self.gateway_host, str) or not _HOST.match(self.gateway_host)
        ):
            raise GeniError(GeniCode.BADARGS, f"bad gateway host {str(self.gateway_host)[:80]!r}")
        if not isinstance(self.gateway_port, int) or not 0 < self.gateway_port < 65536:
            raise GeniError(GeniCode.BADARGS, f"bad gateway port {self.gateway_port!r}")
        ports: dict[str, set[int]] = {}
        for link in links:
            for dpid, port in link.ends:
                ports.setdefault(dpid, set()).add(port)
        object.__setattr__(self, "switches", switches)
        object.__setattr__(self, "links", links)
        object.__setattr__(self, "_authority", authority)
        object.__setattr__(self, "_ports", {dpid: tuple(sorted(p)) for dpid, p in ports.items()})

    @classmethod
    def create(
        cls,
        am_urn: str,
        switches: Iterable[str] = (),
        links: Iterable[str | IslandLink] = (),
        **options: object,
    ) -> "IslandResources":
        """
        Build from any iterables, e.g. the lists a gateway agent reports.

        @param options: the other fields (C{hardware_type}, C{sliver_type},
            C{gateway_host}, C{gateway_port}).
        @raise GeniError: BADARGS for a malformed URN, DPID, link or option.
        """
        parsed = tuple(link if isinstance(link, IslandLink) else parse_link(link) for link in _as_list(links, "links"))
        return cls(am_urn, tuple(_as_list(switches, "switches")), parsed, **options)  # type: ignore[arg-type]

    @property
    def authority(self) -> str:
        """The authority part of the aggregate's URN, used for component URNs."""
        return self._authority

    def node_urn(self, dpid: str) -> str:
        """The component URN of one of this island's switches."""
        return node_urn(self.authority, dpid)

    def interface_urn(self, dpid: str, port: int) -> str:
        """The component URN of one of this island's switch ports."""
        return interface_urn(self.authority, dpid, port)

    def link_urn(self, link: IslandLink) -> str:
        """The component URN of one of this island's links."""
        return link_urn(self.authority, link)

    def ports(self, dpid: str) -> list[int]:
        """The ports of switch C{dpid} that the island's links use, in order."""
        return list(self._ports.get(dpid, ()))


def _as_list(value: object, what: str) -> list[object]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise GeniError(GeniCode.BADARGS, f"{what} must be a list")
    return list(value)
