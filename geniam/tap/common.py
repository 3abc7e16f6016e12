# -*- test-case-name: tests.test_tap -*-
"""
Pieces every geniam daemon is built from: its identity and trust roots,
a bounded thread pool, and a TLS XML-RPC listener.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from geniam.trust.domain import TrustDomain
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.tls import GeniServerTLSOptions, server_tls_options

log = Logger()


@dataclass
class ServerTrust:
    """
    A daemon's own identity and the roots its callers must chain to.

    @ivar domain: the development trust domain used, when nothing was configured.
    """

    identity: Identity
    roots: TrustRoots
    roots_dir: Path
    domain: TrustDomain | None = None


def server_trust(options: Any, role: str, reactor: Any) -> ServerTrust:
    """
    Load the identity and trust roots named by the options, or fall back on
    a development trust domain in C{<data-dir>/trust} (created on first
    start, with an aggregate identity named after the role).
    """
    domain: TrustDomain | None = None
    if options["certificate"]:
        if not options["trust-roots"]:
            raise usage.UsageError("--certificate needs --trust-roots")
        identity = Identity.from_files(options["certificate"], options["private-key"])
    else:
        domain = TrustDomain.open_or_create(Path(options["data-dir"]) / "trust", reactor=reactor)
        identity = domain.ensure_aggregate(role)
    roots_dir = Path(options["trust-roots"]) if options["trust-roots"] else domain.roots_dir  # type: ignore[union-attr]
    roots = TrustRoots.from_directory(roots_dir)
    return ServerTrust(identity, roots, roots_dir, domain)


class ThreadPoolService(Service):
    """A named, bounded thread pool for CPU work, started and stopped with the service tree."""

    def __init__(self, name: str, maximum: int = 4) -> None:
        self.pool = ThreadPool(minthreads=0, maxthreads=maximum, name=name)

    def startService(self) -> None:
        """Start the pool's threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:
        """Join the pool's threads."""
        super().stopService()
        self.pool.stop()


async def listen_tls(
    reactor: Any, port: int, interface: str, tls: GeniServerTLSOptions, site: Any
) -> IListeningPort:
    """Listen for TLS connections that must present a client certificate."""
    endpoint = SSL4ServerEndpoint(reactor, port, tls, interface=interface)  # type: ignore[arg-type]
    listening: IListeningPort = await endpoint.listen(site)
    return listening


def tls_for(trust: ServerTrust, reactor: Any) -> GeniServerTLSOptions:
    """Server TLS options for a daemon's identity and roots."""
    return server_tls_options(trust.identity, trust.roots, reactor)


def stopped_port(port: IListeningPort | None) -> Deferred[None]:
    """Stop listening, if listening."""
    if port is None:
        return Deferred.fromCoroutine(_nothing())
    return port.stopListening()  # type: ignore[return-value]


async def _nothing() -> None:
    return None
