# -*- test-case-name: tests.loopback.test_am -*-
"""
A small AM API v3 client: the one C{geniam call}, the demo and the tests use.

It speaks through L{XmlRpcPeer} with the caller's certificate, wraps
credentials in the v3 struct form, and returns the GENI return structs
unchanged; L{value_of} turns a failed struct into a L{GeniError}.
"""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet.defer import Deferred
from twisted.web.client import HTTPConnectionPool

from geniam.errors import GeniCode, GeniError
from geniam.protocols.peer import XmlRpcPeer
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.tls import GeniTLSPolicy

GENI_V3 = {"type": "GENI", "version": "3"}


def credential_struct(xml: str, geni_type: str = "geni_sfa", version: str = "3") -> dict[str, str]:
    """Wrap a credential document as C{{geni_type, geni_version, geni_value}}."""
    return {"geni_type": geni_type, "geni_version": version, "geni_value": xml}


def value_of(struct: Any) -> Any:
    """Return a GENI struct's C{value}, or raise its error as a L{GeniError}."""
    if not isinstance(struct, dict) or not isinstance(struct.get("code"), dict):
        raise GeniError(GeniCode.ERROR, f"not a GENI return struct: {str(struct)[:200]}")
    code = struct["code"].get("geni_code", GeniCode.ERROR)
    if code != 0:
        try:
            geni_code = GeniCode(code)
        except ValueError:
            geni_code = GeniCode.ERROR
        raise GeniError(geni_code, str(struct.get("output", "")), struct.get("value"))
    return struct.get("value")


class AMClient:
    """
    Calls one aggregate (or slice manager) as one user.

    @param url: the server's AM API v3 URL.
    @param identity: the caller's certificate and key.
    @param roots: the roots the server's certificate must chain to.
    @param credentials: credential documents sent with every call needing them.
    """

    def __init__(
        self,
        reactor: Any,
        url: str,
        identity: Identity,
        roots: TrustRoots,
        credentials: Iterable[str] = (),
        timeout: float = 60.0,
        pool: HTTPConnectionPool | None = None,
    ) -> None:
        self.url = url
        self.policy = GeniTLSPolicy(identity, roots, clock=reactor)
        self.peer = XmlRpcPeer(url, reactor, self.policy, pool=pool, timeout=timeout)
        self.credentials = [credential_struct(c) for c in credentials]

    def close(self) -> Deferred[None]:
        """Close the kept-alive connections."""
        return self.peer.pool.closeCachedConnections()  # type: ignore[no-any-return]

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """Call any method with raw parameters; fire with the GENI struct."""
        return self.peer.call(method, *params)

    def _creds(self, credentials: Iterable[str] | None) -> list[Any]:
        return self.credentials if credentials is None else [credential_struct(c) for c in credentials]

    def get_version(self) -> Deferred[Any]:
        """GetVersion."""
        return self.call("GetVersion", {})

    def list_resources(self, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """ListResources in GENI v3."""
        return self.call("ListResources", self._creds(credentials), {"geni_rspec_version": GENI_V3, **options})

    def describe(self, urns: list[str], credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Describe."""
        return self.call("Describe", urns, self._creds(credentials), {"geni_rspec_version": GENI_V3, **options})

    def allocate(self, slice_urn: str, rspec: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Allocate."""
        return self.call("Allocate", slice_urn, self._creds(credentials), rspec, options)

    def provision(self, urns: list[str], credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Provision."""
        return self.call("Provision", urns, self._creds(credentials), {"geni_rspec_version": GENI_V3, **options})

    def renew(self, urns: list[str], when: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Renew to an RFC 3339 time."""
        return self.call("Renew", urns, self._creds(credentials), when, options)

    def status(self, urns: list[str], credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Status."""
        return self.call("Status", urns, self._creds(credentials), options)

    def perform(self, urns: list[str], action: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """PerformOperationalAction."""
        return self.call("PerformOperationalAction", urns, self._creds(credentials), action, options)

    def delete(self, urns: list[str], credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Delete."""
        return self.call("Delete", urns, self._creds(credentials), options)

    def shutdown(self, slice_urn: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """Shutdown."""
        return self.call("Shutdown", slice_urn, self._creds(credentials), options)

    def begin_transaction(
        self, slice_urn: str, rspec: str, users: list[dict[str, Any]] | None = None, credentials: Iterable[str] | None = None, **options: Any
    ) -> Deferred[Any]:
        """BeginTransaction (the RSpec is the whole desired state)."""
        return self.call("BeginTransaction", slice_urn, self._creds(credentials), rspec, users or [], options)

    def update_transaction(
        self, slice_urn: str, rspec: str, users: list[dict[str, Any]] | None = None, credentials: Iterable[str] | None = None, **options: Any
    ) -> Deferred[Any]:
        """UpdateTransaction."""
        return self.call("UpdateTransaction", slice_urn, self._creds(credentials), rspec, users or [], options)

    def commit_transaction(self, slice_urn: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """CommitTransaction."""
        return self.call("CommitTransaction", slice_urn, self._creds(credentials), options)

    def abort_transaction(self, slice_urn: str, credentials: Iterable[str] | None = None, **options: Any) -> Deferred[Any]:
        """AbortTransaction."""
        return self.call("AbortTransaction", slice_urn, self._creds(credentials), options)
