# -*- test-case-name: tests.agent.test_service -*-
"""
The gateway agent service: who may log in, the realm handing out
L{GatewayPerspective}s, the back end's life cycle and the TLS listener.

Who may log in (L{AgentChecker}): a peer whose TLS client certificate
chains to the agent's trust roots (the handshake requires and verifies it)
and whose URN is in the C{--allow} list, exactly: the agent serves the
aggregates it is configured for and no other, and a certificate an allowed
aggregate's key minted for another name does not log in unless that name
is listed too. Without C{--allow} the agent does not start, except with a
development trust domain, where it allows that domain's C{am}. When a
shared secret is configured (C{--secret-file}), the peer must also answer
the login challenge with it. Everyone else is refused with
L{geniam.protocols.pb.AgentLoginRefused}. The wiring (the TLS listener
and the service tree) is L{geniam.tap.agent.make_agent_service}.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from twisted.application.service import Service
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, DeferredLock, fail, gatherResults, succeed
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.spread import pb
from zope.interface import implementer

from geniam.agent.backend import BlockingRunner, StateFile
from geniam.interfaces import IGatewayBackend
from geniam.agent.backends.command import CommandBackend
from geniam.agent.backends.commandsettings import CommandSettings
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.agent.options import AgentSettings
from geniam.gatewayconfig import ControllerPolicy
from geniam.agent.perspective import AgentLoginRoot, GatewayPerspective, IAgentCredentials, PeerIdentity
from geniam.urn import same_urn

STATE_FILE = "gateway-state.json"
MIN_SECRET_LENGTH = 16


@implementer(ICredentialsChecker)
class AgentChecker:
    """
    Decides which peers may manage the gateway (see the module docstring).
    """

    credentialInterfaces = (IAgentCredentials,)

    def __init__(self, allowed: Sequence[str], own_urn: str | None = None, secret: bytes | None = None) -> None:
        """
        @param allowed: the URNs allowed to log in (nobody else does; an
            empty list lets nobody in).
        @param own_urn: the agent's own URN, never let in.
        @param secret: the shared secret the peer must prove, if any.
        """
        self._allowed = tuple(allowed)
        self._own_urn = own_urn
        self._secret = secret

    def _refusal(self, urn: str | None) -> str | None:
        if urn is None:
            return "the gateway agent requires a verified TLS client certificate"
        if self._own_urn is not None and same_urn(urn, self._own_urn):
            return f"{urn} is the agent's own certificate"
        if not any(same_urn(urn, allowed) for allowed in self._allowed):
            return f"{urn} is not allowed to manage this gateway"
        return None

    def requestAvatarId(self, credentials: Any) -> "Deferred[bytes | tuple[()]]":
        """Fire with the peer's URN (UTF-8), or fail with L{UnauthorizedLogin} saying why."""
        why = self._refusal(credentials.peer_urn)
        if why is None and self._secret is not None and not credentials.check_secret(self._secret):
            why = "wrong or missing shared secret"
        if why is not None:
            return fail(UnauthorizedLogin(why))
        return succeed(str(credentials.peer_urn).encode("utf-8"))


@implementer(IRealm)
class GatewayRealm:
    """Gives every logged-in peer a L{GatewayPerspective} on the one back end."""

    def __init__(self, backend: IGatewayBackend, lock: DeferredLock, policy: ControllerPolicy = ControllerPolicy()) -> None:
        """
        @param backend: the back end every avatar drives.
        @param lock: serialises calls from all avatars (and the back end's start and stop).
        @param policy: where controllers may be.
        """
        self._backend = backend
        self._lock = lock
        self._policy = policy

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> tuple[Any, GatewayPerspective, Any]:
        """Return a L{GatewayPerspective} for C{avatarId}."""
        if pb.IPerspective not in interfaces:
            raise ValueError("the gateway agent offers only PB perspectives")
        peer = avatarId.decode("utf-8", "replace") if isinstance(avatarId, bytes) else str(avatarId)
        return pb.IPerspective, GatewayPerspective(self._backend, self._lock, peer, self._policy), lambda: None


class AgentServerFactory(pb.PBServerFactory):
    """The agent's PB server factory; it knows its open connections so it can close them."""

    def __init__(self, root: Any) -> None:
        pb.PBServerFactory.__init__(self, root, unsafeTracebacks=False)
        self._brokers: set[pb.Broker] = set()

    def buildProtocol(self, addr: Any) -> pb.Broker:
        """Build a broker and track it until its connection is lost."""
        broker = pb.PBServerFactory.buildProtocol(self, addr)
        self._brokers.add(broker)
        broker.notifyOnDisconnect(lambda: self._brokers.discard(broker))
        return broker

    @property
    def open_connections(self) -> int:
        """How many PB connections are open."""
        return len(self._brokers)

    def close_connections(self) -> Deferred[None]:
        """Drop every open connection; fire with None once all are closed."""
        waits = []
        for broker in list(self._brokers):
            closed: Deferred[None] = Deferred()
            broker.notifyOnDisconnect(lambda d=closed: d.called or d.callback(None))
            waits.append(closed)
            transport: Any = broker.transport
            if transport is not None:
                transport.abortConnection()
        return gatherResults(waits).addCallback(lambda _: None)


class ConnectionsService(Service):
    """Closes the agent's open PB connections when the agent stops."""

    def __init__(self, factory: AgentServerFactory) -> None:
        self._factory = factory

    def stopService(self) -> Deferred[None]:
        """Drop every connection; fire once they are closed."""
        Service.stopService(self)
        return self._factory.close_connections()


def make_agent_factory(
    backend: IGatewayBackend,
    lock: DeferredLock,
    checker: AgentChecker,
    peer_identity: PeerIdentity,
    agent_urn: str = "",
    policy: ControllerPolicy = ControllerPolicy(),
) -> AgentServerFactory:
    """
    Build the agent's PB server factory (tracebacks never sent).

    @param peer_identity: reads the verified peer URN off a connection.
    @param policy: where controllers may be.
    """
    portal = Portal(GatewayRealm(backend, lock, policy), [checker])
    return AgentServerFactory(AgentLoginRoot(portal, peer_identity, agent_urn))


def tls_peer_identity(tls: Any) -> PeerIdentity:
    """
    Return a L{PeerIdentity} reading the verified client certificate of a
    connection accepted with C{tls} (L{geniam.trust.tls.GeniServerTLSOptions}).
    """

    def peer_urn(transport: Any) -> str | None:
        urn = tls.peer_gid(transport).urn
        return None if urn is None else str(urn)

    return peer_urn


class BackendService(Service):
    """
    Starts and stops the back end (and the thread pool its file writes use).

    Start-up loads the persisted state: a malformed state file makes
    C{startService} raise, so the agent refuses to run on it.
    """

    log = Logger()

    def __init__(self, backend: IGatewayBackend, lock: DeferredLock, pool: ThreadPool | None = None) -> None:
        self._backend = backend
        self._lock = lock
        self._pool = pool
        self._started: Deferred[None] | None = None

    def startService(self) -> None:
        """Start the pool and the back end; raise if the back end fails at once."""
        if self._pool is not None:
            self._pool.start()
        started = self._lock.run(self._backend.start)
        failures: list[Any] = []
        started.addErrback(failures.append)
        if failures:
            if self._pool is not None:
                self._pool.stop()
            failures[0].raiseException()
        started.addErrback(lambda f: self.log.failure("the gateway back end failed to start", f))
        Service.startService(self)
        self._started = started

    def stopService(self) -> Deferred[None]:
        """Stop the back end (after calls in flight), then the pool."""
        Service.stopService(self)
        stopped = self._lock.run(self._backend.stop)
        stopped.addErrback(lambda f: self.log.failure("the gateway back end failed to stop", f))

        def stop_pool(_: object) -> None:
            if self._pool is not None:
                self._pool.stop()

        stopped.addCallback(stop_pool)
        return stopped


def build_backend(settings: AgentSettings, reactor: Any, runner: BlockingRunner) -> IGatewayBackend:
    """Build the back end named by C{settings.backend}."""
    state_file = StateFile(os.path.join(settings.data_dir, STATE_FILE), runner)
    if settings.backend == "command":
        command = settings.command or CommandSettings.from_config({}, settings.data_dir)
        return CommandBackend(state_file, command, reactor, settings.inventory, runner)
    return SimulatedBackend(state_file, settings.inventory)


def read_secret(path: str) -> bytes:
    """
    Read a shared secret file (surrounding whitespace ignored).

    @raise usage.UsageError: if it cannot be read or is shorter than 16 bytes.
    """
    try:
        with open(path, "rb") as handle:
            secret = handle.read(4096).strip()
    except OSError as e:
        raise usage.UsageError(f"cannot read the secret file {path}: {e.strerror}") from None
    if len(secret) < MIN_SECRET_LENGTH:
        raise usage.UsageError(f"the secret in {path} is shorter than {MIN_SECRET_LENGTH} bytes")
    return secret
