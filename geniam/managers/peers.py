# -*- test-case-name: tests.managers.test_slice -*-
"""
The aggregates (and slice managers) a slice manager forwards to.

A peer is anything with a C{url} and C{call(method, *params) -> Deferred}
firing with the GENI return struct (L{geniam.protocols.peer.XmlRpcPeer} in
a daemon, in-memory fakes in tests). A L{PeerRecord} adds what the slice
manager learns about it: its URN and version (from its GetVersion), and
its circuit breaker.

A peer's URN is what routes sliver URNs and request RSpec elements to it
and what keeps a call from going back to the peer that made it. It is
configured (C{--aggregate URN=URL}) or learned from GetVersion's C{urn};
a peer may also offer C{verified_urn()}, the URN of the certificate its
TLS connection presented, used when its GetVersion names none.
"""

from __future__ import annotations

from typing import Any, Protocol

from twisted.internet.defer import Deferred

from geniam.errors import GeniCode, GeniError
from geniam.managers.breaker import CircuitBreaker
from geniam.urn import URN, parse_urn, same_urn


class Peer(Protocol):
    """What the slice manager needs of a peer."""

    url: str

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """Call C{method}; fire with the GENI return struct; cancellable."""


def describe_value(value: object, limit: int = 80) -> str:
    """A short, safe rendering of a value for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class PeerRecord:
    """
    One peer and what is known of it.

    @ivar peer: the peer.
    @ivar url: its URL.
    @ivar breaker: its circuit breaker.
    @ivar configured_urn: the URN it was configured with, if any.
    @ivar version: the C{value} of its last GetVersion, or C{None}.
    @ivar version_error: why its last GetVersion failed, or C{None}.
    """

    def __init__(self, peer: Peer, breaker: CircuitBreaker, urn: str | None = None) -> None:
        self.peer = peer
        self.url = peer.url
        self.breaker = breaker
        self.configured_urn = str(parse_urn(urn)) if urn is not None else None
        self._urn: str | None = None
        self._parsed: URN | None = None
        self.urn = self.configured_urn
        self.version: dict[str, Any] | None = None
        self.version_error: GeniError | None = None

    def __repr__(self) -> str:
        return f"<PeerRecord {self.name}>"

    @property
    def urn(self) -> str | None:
        """Its URN once known (configured or learned)."""
        return self._urn

    @urn.setter
    def urn(self, urn: str | None) -> None:
        self._parsed = parse_urn(urn) if urn is not None else None
        self._urn = urn

    @property
    def name(self) -> str:
        """How statistics name it: its URN when known, else its URL."""
        return self.urn or self.url

    @property
    def known(self) -> bool:
        """Whether its URN is known, so calls may be routed to it."""
        return self.urn is not None

    @property
    def parsed_urn(self) -> URN | None:
        """Its URN, parsed."""
        return self._parsed

    @property
    def key(self) -> str:
        """A stable identifier: the normalised URN, else the URL."""
        parsed = self.parsed_urn
        return parsed.key if parsed is not None else self.url

    @property
    def is_slice_manager(self) -> bool:
        """Whether its GetVersion says it is a slice manager."""
        return bool(self.version) and self.version.get("interface") == "slicemgr"  # type: ignore[union-attr]

    def is_urn(self, urn: str | None) -> bool:
        """Whether C{urn} names this peer."""
        return urn is not None and self.urn is not None and same_urn(urn, self.urn)

    def has_key(self, key: str | None) -> bool:
        """Whether C{key} (a normalised URN, L{URN.key}) names this peer."""
        return key is not None and self._parsed is not None and self._parsed.key == key

    def owns(self, urn: URN) -> bool:
        """Whether C{urn} (a sliver or component) was minted by this peer's authority."""
        parsed = self.parsed_urn
        return parsed is not None and urn.authority.lower() == parsed.authority.lower()

    def learn(self, struct: Any) -> None:
        """
        Take in the reply to GetVersion.

        @raise GeniError: RPCERROR if the reply is not an AM API v3
            GetVersion, or names another URN than the one configured.
        """
        value = struct.get("value") if isinstance(struct, dict) else None
        code = struct.get("code", {}).get("geni_code") if isinstance(struct, dict) and isinstance(struct.get("code"), dict) else None
        if code != 0 or not isinstance(value, dict):
            raise GeniError(GeniCode.RPCERROR, f"GetVersion did not succeed: {describe_value(struct)}")
        api = value.get("geni_api", struct.get("geni_api"))
        if api != 3 and str(api) != "3":
            versions = value.get("geni_api_versions")
            v3 = versions.get("3") if isinstance(versions, dict) else None
            hint = f"; its AM API v3 URL is {v3}" if isinstance(v3, str) else ""
            raise GeniError(GeniCode.RPCERROR, f"not an AM API v3 endpoint (geni_api {describe_value(api)}){hint}")
        urn = value.get("urn")
        if not isinstance(urn, str) or not urn:
            verified = getattr(self.peer, "verified_urn", None)
            urn = verified() if callable(verified) else None
        if urn is None:
            urn = self.configured_urn
        if urn is None:
            raise GeniError(GeniCode.RPCERROR, "GetVersion names no urn and the certificate named none")
        try:
            urn = str(parse_urn(urn))
        except GeniError as e:
            raise GeniError(GeniCode.RPCERROR, f"GetVersion names a malformed urn: {e.output}") from None
        if self.configured_urn is not None and not same_urn(urn, self.configured_urn):
            raise GeniError(GeniCode.RPCERROR, f"the peer says it is {urn}, but it is configured as {self.configured_urn}")
        self.urn = urn
        self.version = value
        self.version_error = None

    def failed_to_learn(self, error: GeniError) -> None:
        """Remember why GetVersion failed."""
        self.version_error = error
