# -*- test-case-name: tests.test_pb -*-
"""
The gateway agent's Perspective Broker protocol: both ends.

Agent side: L{AgentLoginRoot} is the PB root. Each connection gets a login
gate with two remote methods, C{challenge} (fires with the protocol
version, a fresh nonce and the agent's URN) and C{login(response)}; the
gate builds L{AgentCredentials} from the connection's verified TLS peer
certificate, the nonce and the response, and logs in through a
C{twisted.cred} portal. The avatar, L{GatewayPerspective}, exposes the TBAM
agent's methods (C{getSws}, C{getLinks}, C{setUserAuth}, C{remUserAuth},
C{setTCPProxy}, C{remTCPProxy}, C{setOvs}, C{remOvs}, C{reset}, C{state}),
takes and returns plain data only, validates every argument with
L{geniam.gatewayconfig} and reports expected failures as L{AgentBadArgs}
or L{AgentRefused}. One login attempt is allowed per connection.

AM side: L{open_session} connects and logs in once (the operator's
command line); L{PBGatewayAgent} is the aggregate manager's
L{IGatewayAgent}, kept connected by a C{ClientService} that logs in again
after every reconnect, failing fast while the agent is unreachable.

The shared secret, when configured, is never sent: the client answers the
nonce with C{HMAC-SHA256(secret, "geniam-agent-login-v1" NUL nonce)}.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.cred.credentials import ICredentials
from twisted.cred.error import UnauthorizedLogin, UnhandledCredentials
from twisted.cred.portal import Portal
from twisted.internet.defer import CancelledError, Deferred, DeferredLock, TimeoutError, maybeDeferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from zope.interface import Attribute, implementer

from geniam.agent.backend import GatewayState, IGatewayBackend, normalise_dpid, normalise_link
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import (
    ControllerPolicy,
    canonical_controller,
    parse_controller,
    printable,
    validate_ssh_keys,
    validate_vlan_map,
)
from geniam.interfaces import IGatewayAgent

PROTOCOL_VERSION = 1
LOGIN_CONTEXT = b"geniam-agent-login-v1\x00"
NONCE_BYTES = 32
MAX_INVENTORY = 4096

REMOTE_METHODS: dict[str, int] = {
    "getSws": 0,
    "getLinks": 0,
    "setUserAuth": 1,
    "remUserAuth": 1,
    "setTCPProxy": 1,
    "remTCPProxy": 0,
    "setOvs": 1,
    "remOvs": 0,
    "reset": 0,
    "state": 0,
}
"""The avatar's remote methods and how many arguments each takes."""


class AgentBadArgs(pb.Error):
    """The agent refused a call's arguments (GENI BADARGS)."""


class AgentRefused(pb.Error):
    """The agent declined or failed to apply a call (GENI REFUSED)."""


class AgentLoginRefused(pb.Error):
    """The agent refused to let this peer log in."""


def to_pb_error(error: GeniError) -> pb.Error:
    """Return the PB error sent for an expected failure on the agent."""
    if error.code in (GeniCode.BADARGS, GeniCode.MISSINGARGS, GeniCode.OUTOFRANGE):
        return AgentBadArgs(error.output)
    return AgentRefused(error.output)


def login_response(secret: bytes, nonce: bytes) -> str:
    """The answer to the login challenge C{nonce} for the shared C{secret} (hex)."""
    return hmac.new(secret, LOGIN_CONTEXT + nonce, hashlib.sha256).hexdigest()


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
        """Dispatch a remote call to C{perspective_<message>} after checking its name and arity."""
        arity = REMOTE_METHODS.get(message)
        if arity is None:
            raise AgentBadArgs(f"the gateway agent has no method {message[:40]!r}")
        try:
            args = broker.unserialize(args, self)
            kw = broker.unserialize(kw, self)
        except Exception:
            raise AgentBadArgs(f"{message}: arguments must be plain data (strings, lists, dicts)") from None
        if kw or not isinstance(args, (list, tuple)) or len(args) != arity:
            raise AgentBadArgs(f"{message} takes {arity} positional argument{'s' if arity != 1 else ''}")
        method = getattr(self, "perspective_" + message)
        return broker.serialize(method(*args), self, method, args, kw)

    def _run(self, name: str, operation: Callable[[], Deferred[Any]]) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._guarded(name, operation))

    async def _guarded(self, name: str, operation: Callable[[], Deferred[Any]]) -> Any:
        try:
            return await self._lock.run(operation)
        except GeniError as e:
            self.log.info("{peer}: {method} refused: {why}", peer=self.peer, method=name, why=printable(e.output))
            raise to_pb_error(e) from None
        except pb.Error:
            raise
        except Exception:
            self.log.failure("{peer}: {method} failed", peer=self.peer, method=name)
            raise AgentRefused(f"{name} failed inside the gateway agent; see the agent's log") from None

    async def _apply(self, name: str, call: Callable[[], Deferred[None]], detail: str = "") -> None:
        await call()
        self.log.info("{peer}: {method} {detail}", peer=self.peer, method=name, detail=detail)

    def perspective_getSws(self) -> Deferred[list[str]]:
        """Fire with the switch DPIDs."""
        return self._run("getSws", self._backend.switches)

    def perspective_getLinks(self) -> Deferred[list[str]]:
        """Fire with the links C{DPID:port-DPID:port}."""
        return self._run("getLinks", self._backend.links)

    def perspective_setUserAuth(self, keys: object) -> Deferred[None]:
        """Authorise these SSH public keys (a list of strings) on the gateway."""

        def operation() -> Deferred[None]:
            valid = validate_ssh_keys(keys)
            return Deferred.fromCoroutine(self._apply("setUserAuth", lambda: self._backend.set_user_auth(valid), f"{len(valid)} keys"))

        return self._run("setUserAuth", operation)

    def perspective_remUserAuth(self, keys: object) -> Deferred[None]:
        """Remove these SSH public keys from the gateway."""

        def operation() -> Deferred[None]:
            valid = validate_ssh_keys(keys)
            return Deferred.fromCoroutine(self._apply("remUserAuth", lambda: self._backend.rem_user_auth(valid), f"{len(valid)} keys"))

        return self._run("remUserAuth", operation)

    def perspective_setTCPProxy(self, controller: object) -> Deferred[None]:
        """Forward the controller port to C{controller} (C{host:port})."""

        def operation() -> Deferred[None]:
            canonical = self._policy.check(controller)
            return Deferred.fromCoroutine(self._apply("setTCPProxy", lambda: self._backend.set_tcp_proxy(canonical), canonical))

        return self._run("setTCPProxy", operation)

    def perspective_remTCPProxy(self) -> Deferred[None]:
        """Stop the proxy."""
        return self._run("remTCPProxy", lambda: Deferred.fromCoroutine(self._apply("remTCPProxy", self._backend.rem_tcp_proxy)))

    def perspective_setOvs(self, vlan_map: object) -> Deferred[None]:
        """Apply the VLAN map (a dict C{{testbed: island}})."""

        def operation() -> Deferred[None]:
            valid = validate_vlan_map(vlan_map)
            return Deferred.fromCoroutine(self._apply("setOvs", lambda: self._backend.set_ovs(valid), f"{len(valid)} mappings"))

        return self._run("setOvs", operation)

    def perspective_remOvs(self) -> Deferred[None]:
        """Remove the VLAN map."""
        return self._run("remOvs", lambda: Deferred.fromCoroutine(self._apply("remOvs", self._backend.rem_ovs)))

    def perspective_reset(self) -> Deferred[None]:
        """Restore the default configuration."""
        return self._run("reset", lambda: Deferred.fromCoroutine(self._apply("reset", self._backend.reset)))

    def perspective_state(self) -> Deferred[dict[str, Any]]:
        """Fire with C{{"users": [...], "proxy": "host:port" or "", "vlans": {...}}}."""

        async def operation() -> dict[str, Any]:
            state: GatewayState = await self._backend.state()
            return state.to_wire()

        return self._run("state", lambda: Deferred.fromCoroutine(operation()))


# The AM side.


def _unreachable(why: str) -> GeniError:
    return GeniError(GeniCode.RPCERROR, f"gateway agent unreachable: {why}")


def translate_failure(failure: Failure, method: str) -> GeniError:
    """
    Turn the failure of a remote call into the L{GeniError} the AM reports.

    Refusals keep the agent's message (BADARGS or REFUSED); a lost
    connection is RPCERROR; anything else is ERROR.
    """
    if failure.check(GeniError):
        return failure.value  # type: ignore[no-any-return]
    message = str(failure.value)[:500]
    if failure.check(AgentBadArgs):
        return GeniError(GeniCode.BADARGS, f"gateway agent: {message}")
    if failure.check(AgentRefused):
        return GeniError(GeniCode.REFUSED, f"gateway agent: {message}")
    if failure.check(AgentLoginRefused):
        return GeniError(GeniCode.REFUSED, f"gateway agent refused the login: {message}")
    if failure.check(pb.PBConnectionLost):
        reason = failure.value.args[0] if failure.value.args else None
        if isinstance(reason, Failure) and not reason.check(ConnectionDone, ConnectionLost):
            return _unreachable(f"connection lost: {reason.getErrorMessage()[:300]}")
        return _unreachable("connection lost")
    if failure.check(pb.DeadReferenceError, ConnectionLost, ConnectionDone):
        return _unreachable("connection lost")
    kind = failure.type.decode("utf-8", "replace") if isinstance(failure.type, bytes) else getattr(failure.type, "__name__", str(failure.type))
    return GeniError(GeniCode.ERROR, f"gateway agent error in {method}: {kind.rpartition('.')[2]}: {message}")


def _string_list(value: object, normalise: Callable[[str], str], what: str) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_INVENTORY:
        raise GeniError(GeniCode.ERROR, f"gateway agent sent a malformed {what} list")
    try:
        return [normalise(v) for v in value]
    except ValueError as e:
        raise GeniError(GeniCode.ERROR, f"gateway agent sent a malformed {what}: {e}") from None


class _GatewayCalls:
    """The L{IGatewayAgent} methods on top of C{_call(method, *args)}; validates both ways."""

    async def _call(self, method: str, *args: Any) -> Any:
        raise GeniError(GeniCode.RPCERROR, "gateway agent unreachable: no connection")

    def _do(self, method: str, *args: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._call(method, *args))

    async def _none(self, method: str, *args: Any) -> None:
        await self._call(method, *args)

    def get_switches(self) -> Deferred[list[str]]:
        """Fire with the island's switch DPIDs."""
        return Deferred.fromCoroutine(self._inventory("getSws", normalise_dpid, "switch"))

    def get_links(self) -> Deferred[list[str]]:
        """Fire with the island's links."""
        return Deferred.fromCoroutine(self._inventory("getLinks", normalise_link, "link"))

    async def _inventory(self, method: str, normalise: Callable[[str], str], what: str) -> list[str]:
        return _string_list(await self._call(method), normalise, what)

    def set_user_auth(self, keys: Any) -> Deferred[None]:
        """Authorise these SSH public keys on the gateway."""
        return Deferred.fromCoroutine(self._keys("setUserAuth", keys))

    def rem_user_auth(self, keys: Any) -> Deferred[None]:
        """Remove these SSH public keys from the gateway."""
        return Deferred.fromCoroutine(self._keys("remUserAuth", keys))

    async def _keys(self, method: str, keys: Any) -> None:
        await self._call(method, list(validate_ssh_keys(list(keys) if isinstance(keys, (tuple, list)) else keys)))

    def set_tcp_proxy(self, controller: Any) -> Deferred[None]:
        """Forward the gateway's controller port to C{controller}."""
        return Deferred.fromCoroutine(self._proxy(controller))

    async def _proxy(self, controller: Any) -> None:
        await self._call("setTCPProxy", canonical_controller(controller))

    def rem_tcp_proxy(self) -> Deferred[None]:
        """Stop the proxy."""
        return Deferred.fromCoroutine(self._none("remTCPProxy"))

    def set_ovs(self, vlan_map: Any) -> Deferred[None]:
        """Apply the VLAN map."""
        return Deferred.fromCoroutine(self._vlans(vlan_map))

    async def _vlans(self, vlan_map: Any) -> None:
        await self._call("setOvs", validate_vlan_map(dict(vlan_map) if hasattr(vlan_map, "items") else vlan_map))

    def rem_ovs(self) -> Deferred[None]:
        """Remove the VLAN map."""
        return Deferred.fromCoroutine(self._none("remOvs"))

    def reset(self) -> Deferred[None]:
        """Restore the gateway's default configuration."""
        return Deferred.fromCoroutine(self._none("reset"))

    def state(self) -> Deferred[dict[str, Any]]:
        """Fire with C{{"users": [...], "proxy": str, "vlans": {...}}} as the agent reports it."""
        return Deferred.fromCoroutine(self._state())

    async def _state(self) -> dict[str, Any]:
        raw = await self._call("state")
        try:
            return GatewayState.from_wire(raw).to_wire()
        except GeniError as e:
            raise GeniError(GeniCode.ERROR, f"gateway agent sent a malformed state: {e.output}") from None


@implementer(IGatewayAgent)
class GatewaySession(_GatewayCalls):
    """
    One logged-in connection to a gateway agent.

    @ivar agent_urn: the URN the agent announced.
    @ivar protocol: the agent's protocol version.
    """

    def __init__(
        self, broker: pb.Broker, perspective: pb.RemoteReference, hello: dict[str, Any], clock: IReactorTime, call_timeout: float
    ) -> None:
        self._broker = broker
        self._perspective = perspective
        self._clock = clock
        self._call_timeout = call_timeout
        self.agent_urn = str(hello.get("agent", ""))
        self.protocol = hello.get("protocol")

    @property
    def connected(self) -> bool:
        """True until the connection is lost."""
        return not self._broker.disconnected

    @property
    def transport(self) -> Any:
        """The connection's transport."""
        return self._broker.transport

    def notify_on_disconnect(self, callback: Callable[[], object]) -> None:
        """Call C{callback()} when the connection is lost."""
        self._broker.notifyOnDisconnect(callback)

    def close(self) -> Deferred[None]:
        """Close the connection; fire with None once it is closed."""
        closed = _disconnected(self._broker)
        transport: Any = self._broker.transport
        if not self._broker.disconnected:
            transport.loseConnection()
        return closed

    async def _call(self, method: str, *args: Any) -> Any:
        if self._broker.disconnected:
            raise _unreachable("connection lost")
        d: Deferred[Any] = maybeDeferred(self._perspective.callRemote, method, *args)
        d.addTimeout(self._call_timeout, self._clock)
        d.addErrback(self._failed, method)
        return await d

    def _failed(self, failure: Failure, method: str) -> Failure:
        if failure.check(TimeoutError):
            transport: Any = self._broker.transport
            if not self._broker.disconnected:
                transport.abortConnection()
            return Failure(GeniError(GeniCode.RPCERROR, f"gateway agent did not answer {method} within {self._call_timeout:g} s"))
        if failure.check(CancelledError):
            return failure
        return Failure(translate_failure(failure, method))


def _client_errback(failure: Failure) -> Failure:
    if failure.check(CancelledError):
        return failure
    return Failure(translate_failure(failure, "login"))


_CLOSED = Failure(ConnectionDone())


class _ClientBroker(pb.Broker):
    """A client broker that remembers why its connection was lost."""

    lost_reason: Failure | None = None

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        self.lost_reason = reason
        pb.Broker.connectionLost(self, reason)


class _ClientFactory(pb.PBClientFactory):
    """Builds L{_ClientBroker}s."""

    protocol = _ClientBroker


def _lost_why(broker: pb.Broker) -> str:
    reason = getattr(broker, "lost_reason", None)
    if isinstance(reason, Failure) and not reason.check(ConnectionDone):
        return f"connection lost: {reason.getErrorMessage()[:300]}"
    return "connection lost"


def _disconnected(broker: pb.Broker) -> Deferred[None]:
    """Fire once the broker's connection is closed."""
    done: Deferred[None] = Deferred()
    if broker.disconnected:
        done.callback(None)
        return done

    def closed() -> None:
        if not done.called:
            done.callback(None)

    broker.notifyOnDisconnect(closed)
    return done


def _ready(broker: pb.Broker) -> Deferred[None]:
    """Fire once the broker has finished the Banana negotiation (or fail if it disconnects first)."""
    ready: Deferred[None] = Deferred()
    if broker.disconnected:
        ready.errback(_unreachable(_lost_why(broker)))
        return ready

    def connected() -> None:
        if not ready.called:
            ready.callback(None)

    def lost() -> None:
        if not ready.called:
            ready.errback(_unreachable(_lost_why(broker)))

    broker.notifyOnDisconnect(lost)
    broker.notifyOnConnect(connected)
    return ready


async def _login(broker: pb.Broker, secret: bytes | None, check_peer: Callable[[Any], None] | None) -> tuple[Any, dict[str, Any]]:
    await _ready(broker)
    root = broker.remoteForName("root")
    hello = await root.callRemote("challenge").addErrback(_client_errback)
    if not isinstance(hello, dict) or hello.get("protocol") != PROTOCOL_VERSION or not isinstance(hello.get("nonce"), str):
        raise GeniError(GeniCode.RPCERROR, "the peer does not speak the gateway agent protocol version 1")
    try:
        nonce = bytes.fromhex(hello["nonce"])
    except ValueError:
        raise GeniError(GeniCode.RPCERROR, "the gateway agent sent a malformed challenge") from None
    if check_peer is not None:
        check_peer(broker.transport)
    response = login_response(secret, nonce) if secret is not None else None
    perspective = await root.callRemote("login", response).addErrback(_client_errback)
    if not isinstance(perspective, pb.RemoteReference):
        raise GeniError(GeniCode.RPCERROR, "the gateway agent answered the login with no perspective")
    return perspective, hello


async def login_session(
    broker: pb.Broker,
    clock: IReactorTime,
    *,
    secret: bytes | None = None,
    check_peer: Callable[[Any], None] | None = None,
    login_timeout: float = 30.0,
    call_timeout: float = 30.0,
) -> GatewaySession:
    """
    Log in on an already connected client broker.

    The connection is aborted if the login fails or takes longer than C{login_timeout}.

    @param secret: the shared secret, if the agent requires one.
    @param check_peer: called with the transport once TLS is up; raises to reject the agent.
    @raise GeniError: REFUSED if the agent refused the login, RPCERROR otherwise.
    """
    attempt = Deferred.fromCoroutine(_login(broker, secret, check_peer))
    attempt.addTimeout(login_timeout, clock)
    try:
        perspective, hello = await attempt
    except BaseException as e:
        transport: Any = broker.transport
        if transport is not None and not broker.disconnected:
            transport.abortConnection()
            await _disconnected(broker)
        if isinstance(e, CancelledError):
            raise
        if isinstance(e, TimeoutError):
            raise _unreachable(f"no login answer within {login_timeout:g} s") from None
        if isinstance(e, GeniError) or not isinstance(e, Exception):
            raise
        raise _unreachable(str(e) or type(e).__name__) from None
    return GatewaySession(broker, perspective, hello, clock, call_timeout)


async def open_session(
    endpoint: IStreamClientEndpoint,
    clock: IReactorTime,
    *,
    secret: bytes | None = None,
    check_peer: Callable[[Any], None] | None = None,
    login_timeout: float = 30.0,
    call_timeout: float = 30.0,
) -> GatewaySession:
    """
    Connect to an agent through C{endpoint} and log in; for one-off use.

    @raise GeniError: RPCERROR if the agent cannot be reached, REFUSED if it
        refused the login.
    """
    try:
        broker: Any = await endpoint.connect(_ClientFactory())
    except CancelledError:
        raise
    except Exception as e:
        raise _unreachable(str(e) or type(e).__name__) from None
    return await login_session(
        broker, clock, secret=secret, check_peer=check_peer, login_timeout=login_timeout, call_timeout=call_timeout
    )


class _SessionProtocol(Protocol):
    """What the C{ClientService} sees of a logged-in connection."""

    def __init__(self, on_lost: Callable[["_SessionProtocol"], None]) -> None:
        self.session: GatewaySession | None = None
        self._on_lost = on_lost

    def attach(self, session: GatewaySession) -> None:
        """Remember the session this connection carries."""
        self.session = session

    def connectionLost(self, reason: Failure = _CLOSED) -> None:
        self._on_lost(self)


@implementer(IStreamClientEndpoint)
class _LoginEndpoint:
    """
    Connects and logs in before handing C{ClientService} a connection, so a
    refused or broken login counts as a failed connection attempt.
    """

    def __init__(self, open_session: Callable[[], Deferred[GatewaySession]]) -> None:
        self._open_session = open_session

    def connect(self, factory: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: Any) -> Any:
        session = await self._open_session()
        broker: Any = session._broker
        if not session.connected:
            raise ConnectionLost("the gateway agent closed the connection after the login")
        handle = factory.buildProtocol(broker.transport.getPeer())
        handle.makeConnection(broker.transport)
        handle.attach(session)
        session.notify_on_disconnect(lambda: handle.connectionLost(Failure(ConnectionLost("gateway agent connection lost"))))
        return handle


ConnectionObserver = Callable[[bool], object]
"""Called with True after each login and False after each lost connection."""


@implementer(IGatewayAgent)
class PBGatewayAgent(_GatewayCalls, MultiService):
    """
    The aggregate manager's gateway agent over PB, kept connected.

    Start it as a service (it is a C{MultiService} holding a
    C{ClientService}). While no logged-in connection exists every call
    fails at once with C{GeniError(RPCERROR, "gateway agent unreachable: ...")};
    each call has a timeout, after which the connection is dropped and
    re-established. Use L{when_connected} and L{add_connection_observer}
    to re-apply or repair the configuration after a reconnect.

    @ivar last_error: why the agent is not connected, for messages.
    """

    log = Logger()

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        secret: bytes | None = None,
        check_peer: Callable[[Any], None] | None = None,
        retry_policy: Callable[[int], float] | None = None,
        call_timeout: float = 30.0,
        login_timeout: float = 30.0,
    ) -> None:
        """
        @param endpoint: connects to the agent (TLS with the AM's certificate).
        @param clock: schedules retries and timeouts.
        @param secret: the shared secret, if the agent requires one.
        @param check_peer: called with the transport once TLS is up; raises to reject the agent.
        @param retry_policy: seconds to wait before reconnect attempt N
            (default: back-off from 0.5 s, doubling, at most 4 s, plus up to
            1 s of jitter, so a returning agent is reached within 5 s).
        @param call_timeout: seconds a call may take.
        @param login_timeout: seconds a login may take.
        """
        MultiService.__init__(self)
        self._endpoint = endpoint
        self._clock = clock
        self._secret = secret
        self._check_peer = check_peer
        self._call_timeout = call_timeout
        self._login_timeout = login_timeout
        self._session: GatewaySession | None = None
        self._waiters: list[Deferred[None]] = []
        self._observers: list[ConnectionObserver] = []
        self.last_error = "not connected yet"
        policy = retry_policy or backoffPolicy(initialDelay=0.5, maxDelay=4.0, factor=2.0)
        self._client = ClientService(
            _LoginEndpoint(self._open),
            Factory.forProtocol(lambda: _SessionProtocol(self._lost)),
            retryPolicy=policy,
            clock=clock,
            prepareConnection=self._connected,
        )
        self._client.setServiceParent(self)

    @property
    def connected(self) -> bool:
        """True while a logged-in connection exists."""
        return self._session is not None

    @property
    def session(self) -> GatewaySession | None:
        """The current logged-in connection, if any."""
        return self._session

    def when_connected(self) -> Deferred[None]:
        """
        Fire with None when a logged-in connection exists: now, or after the
        next successful login. Each call returns a new Deferred; cancelling
        it stops the wait. Fails with C{CancelledError} if the service stops.
        """
        if self._session is not None:
            return succeed(None)

        def cancel(d: Deferred[None]) -> None:
            if d in self._waiters:
                self._waiters.remove(d)

        waiter: Deferred[None] = Deferred(cancel)
        self._waiters.append(waiter)
        return waiter

    def add_connection_observer(self, observer: ConnectionObserver) -> None:
        """Call C{observer(True)} after each login and C{observer(False)} after each loss."""
        self._observers.append(observer)

    def remove_connection_observer(self, observer: ConnectionObserver) -> None:
        """Stop calling C{observer}."""
        if observer in self._observers:
            self._observers.remove(observer)

    def _notify(self, connected: bool) -> None:
        for observer in list(self._observers):
            try:
                result = observer(connected)
            except Exception:
                self.log.failure("gateway agent connection observer failed")
                continue
            if isinstance(result, Deferred):
                result.addErrback(lambda f: self.log.failure("gateway agent connection observer failed", f))

    def _open(self) -> Deferred[GatewaySession]:
        return Deferred.fromCoroutine(self._open_logged_in())

    async def _open_logged_in(self) -> GatewaySession:
        try:
            return await open_session(
                self._endpoint,
                self._clock,
                secret=self._secret,
                check_peer=self._check_peer,
                login_timeout=self._login_timeout,
                call_timeout=self._call_timeout,
            )
        except GeniError as e:
            why = e.output.removeprefix("gateway agent unreachable: ")
            if why != self.last_error:
                self.log.warn("cannot reach the gateway agent: {why}", why=e.output)
            self.last_error = why
            raise

    def _connected(self, handle: Any) -> None:
        session = handle.session
        self._session = session
        self.last_error = ""
        self.log.info("connected to gateway agent {urn}", urn=session.agent_urn)
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._notify(True)

    def _lost(self, handle: _SessionProtocol) -> None:
        if handle.session is not None and handle.session is self._session:
            self._session = None
            self.last_error = "connection lost"
            self.log.info("lost the connection to the gateway agent")
            self._notify(False)

    async def _call(self, method: str, *args: Any) -> Any:
        session = self._session
        if session is None:
            raise _unreachable(self.last_error or "not connected")
        return await session._call(method, *args)

    def stopService(self) -> Deferred[None]:
        """Close the connection and stop reconnecting; pending L{when_connected} waiters fail."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(CancelledError("gateway agent client stopped"))
        return MultiService.stopService(self)  # type: ignore[no-any-return]


def agent_peer_check(roots: Any, clock: IReactorTime, expected_urn: str | None = None) -> Callable[[Any], None]:
    """
    Return a C{check_peer} function that accepts only a gateway agent's certificate.

    The peer's certificate and chain are verified against C{roots}
    (L{geniam.trust.gid.TrustRoots}) at C{clock.seconds()} with
    L{geniam.trust.tls.peer_gid}. With C{expected_urn}, its URN must be that
    one; without, it must be an aggregate certificate (C{...+authority+am}).

    @raise GeniError: REFUSED from the returned function for any other peer.
    """
    from geniam.urn import parse_urn, same_urn

    def check(transport: Any) -> None:
        from geniam.trust.tls import peer_gid

        try:
            urn = peer_gid(transport, roots, clock).urn or ""
        except Exception as e:
            raise GeniError(GeniCode.REFUSED, f"the gateway agent's certificate is not acceptable: {e}") from None
        if expected_urn is not None:
            if not same_urn(urn, expected_urn):
                raise GeniError(GeniCode.REFUSED, f"the peer is {urn or 'nameless'}, not the expected gateway agent {expected_urn}")
            return
        try:
            parsed = parse_urn(urn)
        except GeniError:
            parsed = None
        if parsed is None or parsed.type != "authority" or parsed.name != "am":
            raise GeniError(GeniCode.REFUSED, f"the peer certificate {urn or '(no URN)'} is not an aggregate/agent certificate")

    return check


def parse_agent_address(text: str) -> tuple[str, int]:
    """
    Parse C{HOST:PORT} (IPv6 as C{[addr]:port}).

    @raise GeniError: BADARGS for anything else.
    """
    try:
        return parse_controller(text)
    except GeniError as e:
        raise GeniError(GeniCode.BADARGS, e.output.replace("controller", "agent address", 1)) from None


def make_gateway_agent_endpoint(
    reactor: Any,
    address: str,
    identity: Any,
    roots: Any,
    expected_urn: str | None = None,
    clock: IReactorTime | None = None,
    connect_timeout: float = 30.0,
) -> IStreamClientEndpoint:
    """
    The TLS endpoint to an agent at C{HOST:PORT}: presents C{identity}
    (L{geniam.trust.identity.Identity}) and verifies the agent's chain
    against C{roots} (L{geniam.trust.gid.TrustRoots}), its URN when given,
    and the host name where the certificate names one.

    @param clock: the time certificates are checked at (default: C{reactor}).
    """
    from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

    from geniam.trust.tls import client_tls_options

    host, port = parse_agent_address(address)
    options = client_tls_options(identity, roots, hostname=host, expected_urn=expected_urn, clock=clock or reactor)
    return wrapClientTLS(options, HostnameEndpoint(reactor, host, port, timeout=connect_timeout))


def make_gateway_agent(
    reactor: Any,
    address: str,
    identity: Any,
    roots: Any,
    *,
    expected_urn: str | None = None,
    secret: bytes | None = None,
    call_timeout: float = 30.0,
    retry_policy: Callable[[int], float] | None = None,
    clock: IReactorTime | None = None,
) -> PBGatewayAgent:
    """
    Build the AM's L{PBGatewayAgent} for the agent at C{HOST:PORT}
    (see L{make_gateway_agent_endpoint}); add it to the AM's service tree.

    @param expected_urn: the agent's URN; without it any aggregate certificate
        chained to C{roots} is accepted as the agent.
    @param secret: the shared secret, if the agent is configured with one.
    @param clock: the time certificates are checked at (default: C{reactor}).
    @raise GeniError: BADARGS if C{address} is not C{HOST:PORT}.
    """
    endpoint = make_gateway_agent_endpoint(reactor, address, identity, roots, expected_urn, clock)
    return PBGatewayAgent(
        endpoint,
        reactor,
        secret=secret,
        check_peer=agent_peer_check(roots, clock or reactor, expected_urn),
        call_timeout=call_timeout,
        retry_policy=retry_policy,
    )
