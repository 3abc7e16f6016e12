# -*- test-case-name: tests.protocols.test_pb,tests.protocols.test_pbclient -*-
"""
The gateway agent's Perspective Broker protocol: what both ends share, and
one logged-in session from the aggregate manager's end.

The agent's root object hands each connection a login gate with two remote
methods, C{challenge} (fires with the protocol version, a fresh nonce and
the agent's URN) and C{login(response)}; the avatar then answers the TBAM
agent's methods (L{REMOTE_METHODS}), taking and returning plain data only,
and reports expected failures as L{AgentBadArgs} or L{AgentRefused}. The
agent's end lives in L{geniam.agent.perspective}.

Here: the wire vocabulary (L{REMOTE_METHODS}, the PB errors, the login
answer), L{translate_failure} (a remote failure as the L{GeniError} the AM
reports) and L{open_session}/L{login_session}, which connect and log in
once and give a L{GatewaySession}, an L{IGatewayAgent}. The reconnecting
client the aggregate manager runs is L{geniam.protocols.pbclient}.

The shared secret, when configured, is never sent: the client answers the
nonce with C{HMAC-SHA256(secret, "geniam-agent-login-v1" NUL nonce)}.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, TimeoutError, maybeDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.python.failure import Failure
from twisted.spread import pb
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gateway.inventory import normalise_dpid, normalise_link
from geniam.gateway.verbs import GET_LINKS, GET_SWITCHES, STATE, VERBS, GatewayCalls, Verb
from geniam.interfaces import IGatewayAgent

PROTOCOL_VERSION = 1
LOGIN_CONTEXT = b"geniam-agent-login-v1\x00"
NONCE_BYTES = 32
MAX_INVENTORY = 4096

REMOTE_METHODS: dict[str, int] = {verb.remote: verb.arity for verb in VERBS}
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


def _plain(argument: object) -> object:
    if isinstance(argument, (list, tuple)):
        return list(argument)
    if isinstance(argument, Mapping):
        return dict(argument)
    return argument


class _GatewayCalls(GatewayCalls):
    """
    The L{IGatewayAgent} methods on top of C{_call(method, *args)}.

    Arguments come from bookings validated where their request entered the
    AM: only their number is checked before they are sent (the agent checks
    them where the link delivers them, its own trust boundary); what the
    agent answers is checked here.
    """

    async def _call(self, method: str, *args: Any) -> Any:
        raise GeniError(GeniCode.RPCERROR, "gateway agent unreachable: no connection")

    def _verb(self, verb: Verb, *args: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(self._remote(verb, args))

    async def _remote(self, verb: Verb, args: tuple[Any, ...]) -> Any:
        verb.check_arity(args)
        answer = await self._call(verb.remote, *[_plain(a) for a in args])
        if verb is GET_SWITCHES:
            return _string_list(answer, normalise_dpid, "switch")
        if verb is GET_LINKS:
            return _string_list(answer, normalise_link, "link")
        if verb is STATE:
            return GatewayConfig.from_report(answer, "the gateway agent").to_wire()
        return None


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
