# -*- test-case-name: tests.protocols.test_pbclient,tests.loopback.test_pb -*-
"""
The aggregate manager's gateway agent client over Perspective Broker, kept
connected: L{PBGatewayAgent} (an L{IGatewayAgent} and a service holding a
C{ClientService} that logs in again after every reconnect, failing fast
while the agent is unreachable), and the functions that build it for an
agent at C{HOST:PORT} over mutual TLS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller
from geniam.interfaces import IGatewayAgent
from geniam.protocols.pb import _CLOSED, GatewaySession, _GatewayCalls, _unreachable, open_session

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
