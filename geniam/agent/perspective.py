# -*- test-case-name: tests.protocols.test_pb,tests.agent.test_service -*-
"""
The gateway agent's end of the Perspective Broker link.

L{AgentLoginRoot} is the PB root. Each connection gets a login gate with
two remote methods, C{challenge} and C{login(response)}; the gate builds
L{AgentCredentials} from the connection's verified TLS peer certificate,
the nonce and the response, and logs in through a C{twisted.cred} portal.
The avatar, L{GatewayPerspective}, exposes the TBAM agent's methods
(L{geniam.gateway.verbs.VERBS}), takes and returns plain data only,
validates every argument (this is where the PB link delivers it) and reports
expected failures as L{AgentBadArgs} or L{AgentRefused}. One login attempt
is allowed per connection.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Any

from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, DeferredLock
from twisted.logger import Logger
from twisted.spread import pb
from zope.interface import Attribute, implementer

from geniam.errors import GeniError
from geniam.gateway.verbs import BY_REMOTE, Verb, apply_verb
from geniam.gatewayconfig import ControllerPolicy, printable
from geniam.interfaces import IGatewayBackend
from geniam.protocols.pb import (
    NONCE_BYTES,
    PROTOCOL_VERSION,
    AgentBadArgs,
    AgentLoginRefused,
    AgentRefused,
    login_response,
    to_pb_error,
)

class IAgentCredentials(ICredentials):
    """
    What a peer presents to log in to the gateway agent.
    """

    peer_urn = Attribute("The URN of the peer's verified TLS client certificate, or None.")

    def check_secret(secret):  # type: ignore[misc]
        """Return True if the peer answered the challenge with this shared secret (bytes)."""


@implementer(IAgentCredentials)
class AgentCredentials:
    """
    A peer's verified certificate URN and its answer to the login challenge.
    """

    def __init__(self, peer_urn: str | None, nonce: bytes, response: str | None) -> None:
        """
        @param peer_urn: the URN of the peer's verified certificate, if any.
        @param nonce: the challenge sent on this connection.
        @param response: the peer's answer, or None if it sent none.
        """
        self.peer_urn = peer_urn
        self._nonce = nonce
        self._response = response

    def check_secret(self, secret: bytes) -> bool:
        """Return True if the response is this secret's answer to the nonce."""
        if self._response is None:
            return False
        return hmac.compare_digest(self._response.encode("ascii", "replace"), login_response(secret, self._nonce).encode("ascii"))


PeerIdentity = Callable[[Any], "str | None"]
"""Returns the verified URN of a connection's peer certificate, or None (may raise)."""


@implementer(pb.IPBRoot)
class AgentLoginRoot:
    """
    The gateway agent's PB root: one login gate per connection.
    """

    def __init__(self, portal: Portal, peer_identity: PeerIdentity, agent_urn: str = "") -> None:
        """
        @param portal: the portal whose checkers decide who may log in and
            whose realm returns L{pb.IPerspective} avatars.
        @param peer_identity: extracts the verified peer URN from a transport.
        @param agent_urn: the agent's own URN, announced in the challenge.
        """
        self._portal = portal
        self._peer_identity = peer_identity
        self._agent_urn = agent_urn

    def rootObject(self, broker: pb.Broker) -> pb.Referenceable:
        """Return a fresh login gate for C{broker}'s connection."""
        return _LoginGate(self._portal, broker, self._peer_identity, self._agent_urn)


class _LoginGate(pb.Referenceable):
    """The root object of one connection: a challenge, then one login attempt."""

    log = Logger()

    def __init__(self, portal: Portal, broker: pb.Broker, peer_identity: PeerIdentity, agent_urn: str) -> None:
        self._portal = portal
        self._broker = broker
        self._peer_identity = peer_identity
        self._agent_urn = agent_urn
        self._nonce = os.urandom(NONCE_BYTES)
        self._attempted = False

    def remote_challenge(self) -> dict[str, Any]:
        """Return the protocol version, this connection's nonce (hex) and the agent's URN."""
        return {"protocol": PROTOCOL_VERSION, "nonce": self._nonce.hex(), "agent": self._agent_urn}

    def remote_login(self, response: object = None) -> Deferred[Any]:
        """Log in with the answer to the challenge (or None); fire with the avatar."""
        return Deferred.fromCoroutine(self._login(response))

    def _peer(self) -> str | None:
        try:
            transport: Any = self._broker.transport
            return self._peer_identity(transport)
        except Exception as e:
            self.log.info("gateway agent login from an unverifiable peer: {error}", error=printable(e))
            return None

    async def _login(self, response: object) -> Any:
        if self._attempted:
            raise AgentLoginRefused("one login attempt per connection; reconnect to try again")
        self._attempted = True
        if response is not None and (not isinstance(response, str) or len(response) > 256):
            raise AgentLoginRefused("the login response must be a hex string")
        credentials = AgentCredentials(self._peer(), self._nonce, response)
        try:
            _, avatar, logout = await self._portal.login(credentials, None, pb.IPerspective)
        except UnauthorizedLogin as e:
            self.log.warn(
                "gateway agent refused login from {peer}: {why}",
                peer=printable(credentials.peer_urn or "an unknown peer"),
                why=printable(e),
            )
            raise AgentLoginRefused(str(e) or "login refused") from None
        except UnhandledCredentials:
            raise AgentLoginRefused("this agent accepts no logins") from None
        self.log.info("gateway agent login from {peer}", peer=printable(credentials.peer_urn))
        reference = avatar if isinstance(avatar, pb.Referenceable) else pb.AsReferenceable(avatar, "perspective")
        self._broker.notifyOnDisconnect(logout)
        return reference


class GatewayPerspective(pb.Avatar):
    """
    A logged-in AM's view of the gateway: the TBAM agent's methods, validated.
    """

    log = Logger()

    def __init__(
        self, backend: IGatewayBackend, lock: DeferredLock, peer: str, policy: ControllerPolicy = ControllerPolicy()
    ) -> None:
        """
        @param backend: the back end that applies the configuration.
        @param lock: shared by every avatar of the agent, so calls never interleave.
        @param peer: who logged in, for the log.
        @param policy: where controllers may be; checked again here, whatever the AM checked.
        """
        self._backend = backend
        self._lock = lock
        self._policy = policy
        self.peer = printable(peer)

    def perspectiveMessageReceived(self, broker: pb.Broker, message: str, args: Any, kw: Any) -> Any:
        """Apply the verb C{message} names (see L{geniam.gateway.verbs}) after checking its name and arity."""
        verb = BY_REMOTE.get(message)
        if verb is None:
            raise AgentBadArgs(f"the gateway agent has no method {message[:40]!r}")
        try:
            args = broker.unserialize(args, self)
            kw = broker.unserialize(kw, self)
        except Exception:
            raise AgentBadArgs(f"{message}: arguments must be plain data (strings, lists, dicts)") from None
        if kw or not isinstance(args, (list, tuple)) or len(args) != verb.arity:
            raise AgentBadArgs(verb.arity_error())
        answer = Deferred.fromCoroutine(self._serve(verb, tuple(args)))
        return broker.serialize(answer, self, self._serve, args, kw)

    async def _serve(self, verb: Verb, args: tuple[object, ...]) -> Any:
        try:
            return await self._lock.run(lambda: Deferred.fromCoroutine(self._apply(verb, args)))
        except GeniError as e:
            self.log.info("{peer}: {method} refused: {why}", peer=self.peer, method=verb.remote, why=printable(e.output))
            raise to_pb_error(e) from None
        except pb.Error:
            raise
        except Exception:
            self.log.failure("{peer}: {method} failed", peer=self.peer, method=verb.remote)
            raise AgentRefused(f"{verb.remote} failed inside the gateway agent; see the agent's log") from None

    async def _apply(self, verb: Verb, args: tuple[object, ...]) -> Any:
        answer, valid = await apply_verb(self._backend, verb, args, self._policy)
        if verb.changes:
            detail = verb.describe(valid[0]) if valid else ""
            self.log.info("{peer}: {method} {detail}", peer=self.peer, method=verb.remote, detail=detail)
        return answer
