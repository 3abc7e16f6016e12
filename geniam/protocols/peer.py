# -*- test-case-name: tests.protocols.test_peer -*-
"""
The outbound XML-RPC client used by the slice manager and C{geniam call}.

L{XmlRpcPeer} posts calls with L{twisted.web.client.Agent}, so TLS is
whatever L{IPolicyForHTTPS} the trust layer supplies (a client certificate
and a check of the peer). A URL whose host is an IPv4 or IPv6 literal is
reached with a plain TCP connection (L{PeerEndpointFactory}), so a refused
connection is reported at once rather than after a host name endpoint's
attempt delay. Every call has a timeout, a bound on the
response size, and is cancellable: cancelling aborts the HTTP request and
its connection.

Failures are L{PeerError} subclasses, which are L{GeniError}s carrying a
GENI code, so a caller may let them propagate into a GENI return struct.
The returned value itself is not interpreted here: a GENI struct with a
non-zero C{geni_code} is a successful call.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError, ConnectingCancelledError, DNSLookupError
from twisted.internet.error import TimeoutError as ConnectTimeoutError
from twisted.internet.interfaces import IConsumer, IReactorTCP, IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    PotentialDataLoss,
    RequestGenerationFailed,
    RequestNotSent,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
)
from twisted.web.http_headers import Headers
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import UNKNOWN_LENGTH, IAgentEndpointFactory, IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError
from geniam.protocols.marshal import XmlRpcDecodeError, dump_call, parse_response

DEFAULT_TIMEOUT = 120.0
"""Default seconds a call may take, connection included."""

DEFAULT_MAX_RESPONSE = 64 * 1024 * 1024
"""Default limit on a response body, in bytes."""

USER_AGENT = b"geniam XML-RPC client"

try:
    from OpenSSL.SSL import Error as _SSLError
except ImportError:  # pragma: no cover - pyOpenSSL is a dependency
    _SSLError = ()  # type: ignore[assignment,misc]

try:
    from service_identity import VerificationError as _VerificationError
except ImportError:  # pragma: no cover - service_identity is a dependency
    _VerificationError = ()  # type: ignore[assignment,misc]


class PeerError(GeniError):
    """
    A call to a peer failed.

    @ivar url: the peer's URL.
    @ivar method: the XML-RPC method called.
    @ivar reason: a short description of the failure.
    """

    default_code = GeniCode.RPCERROR

    def __init__(self, url: str, method: str, reason: str, code: GeniCode | None = None) -> None:
        super().__init__(code if code is not None else self.default_code, f"{method} at {url}: {reason}")
        self.url = url
        self.method = method
        self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.output!r})"


class PeerRequestError(PeerError):
    """The call's parameters cannot be encoded as XML-RPC (BADARGS)."""

    default_code = GeniCode.BADARGS


class PeerConnectionError(PeerError):
    """The peer could not be reached, or closed the connection without a response (RPCERROR)."""


class PeerTLSError(PeerError):
    """The TLS handshake or the check of the peer's certificate failed (RPCERROR)."""


class PeerTimeout(PeerError):
    """The call did not complete within its timeout (TIMEDOUT)."""

    default_code = GeniCode.TIMEDOUT


class PeerHTTPError(PeerError):
    """
    The peer answered with an HTTP status other than 200: SERVERBUSY for
    503 and 504, TOOBIG for 413 (the request was over the peer's limit),
    RPCERROR otherwise.

    @ivar status: the HTTP status code.
    """

    def __init__(self, url: str, method: str, status: int, reason: str) -> None:
        if status in (503, 504):
            code = GeniCode.SERVERBUSY
        elif status == 413:
            code = GeniCode.TOOBIG
        else:
            code = GeniCode.RPCERROR
        super().__init__(url, method, reason, code)
        self.status = status


class PeerFault(PeerError):
    """
    The peer answered with an XML-RPC fault (RPCERROR, or SERVERBUSY for
    fault code -32001).

    @ivar fault_code: the fault's code.
    @ivar fault_string: the fault's message.
    """

    def __init__(self, url: str, method: str, fault_code: int, fault_string: str) -> None:
        code = GeniCode.SERVERBUSY if fault_code == GeniCode.SERVERBUSY else GeniCode.RPCERROR
        super().__init__(url, method, f"XML-RPC fault {fault_code}: {_shorten(fault_string)}", code)
        self.fault_code = fault_code
        self.fault_string = fault_string


class PeerProtocolError(PeerError):
    """The peer's response is not a well-formed XML-RPC response (RPCERROR)."""


class PeerResponseTooLarge(PeerError):
    """The peer's response is longer than the limit (RPCERROR)."""


def _shorten(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@implementer(IBodyProducer)
class _BytesProducer:
    """An L{IBodyProducer} for a body already in memory."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Nothing to pause: the body is written at once."""

    def resumeProducing(self) -> None:
        """Nothing to resume: the body is written at once."""

    def stopProducing(self) -> None:
        """Nothing to stop: the body is written at once."""


class _TooLarge(Exception):
    """The body passed the limit; the connection was aborted."""


class _BoundedReader(Protocol):
    """Collect a response body up to a limit, aborting the connection beyond it."""

    def __init__(self, limit: int, finished: Deferred[bytes]) -> None:
        self._limit = limit
        self._finished = finished
        self._parts: list[bytes] = []
        self._size = 0
        self._done = False

    def dataReceived(self, data: bytes) -> None:
        if self._done:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done = True
            self._parts = []
            self.abort()
            self._finished.errback(_TooLarge())
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self._done:
            return
        self._done = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self._finished.callback(b"".join(self._parts))
        else:
            self._finished.errback(reason)

    def abort(self) -> None:
        """Abort the connection the body arrives on."""
        transport = self.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            transport.stopProducing()  # type: ignore[attr-defined]


def _read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """Read C{response}'s body; fails with L{_TooLarge} beyond C{limit} bytes; cancelling aborts."""
    reader: _BoundedReader

    def cancel(d: Deferred[bytes]) -> None:
        reader._done = True
        reader.abort()

    finished: Deferred[bytes] = Deferred(cancel)
    reader = _BoundedReader(limit, finished)
    response.deliverBody(reader)
    declared = response.length
    if declared is not UNKNOWN_LENGTH and isinstance(declared, int) and declared > limit and not reader._done:
        reader._done = True
        reader.abort()
        finished.errback(_TooLarge())
    return finished


def _wrapped_reasons(error: BaseException) -> list[BaseException]:
    """The exceptions wrapped in Twisted's HTTP client errors, recursively."""
    found = [error]
    reasons = getattr(error, "reasons", None)
    if isinstance(error, (ResponseFailed, RequestTransmissionFailed, RequestGenerationFailed)) and reasons:
        for reason in reasons:
            if isinstance(reason, Failure) and reason.value is not None:
                found.extend(_wrapped_reasons(reason.value))
    return found


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    name = type(error).__name__
    return _shorten(f"{name}: {text}" if text and text != name else name)


@implementer(IAgentEndpointFactory)
class PeerEndpointFactory:
    """
    Endpoints for L{Agent}: plain TCP to an IPv4 or IPv6 literal host, a
    L{HostnameEndpoint} for a name; wrapped in TLS for C{https}.

    @ivar reactor: provides TCP and time.
    @ivar tls_policy: builds the TLS options for each host and port.
    """

    def __init__(self, reactor: IReactorTCP, tls_policy: IPolicyForHTTPS) -> None:
        """
        @param reactor: provides TCP and time.
        @param tls_policy: builds the TLS options for each host and port.
        """
        self.reactor = reactor
        self.tls_policy = tls_policy

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:
        """
        The endpoint to reach C{uri}'s host and port.

        @raise SchemeNotSupported: for a scheme other than C{http} or C{https}.
        @raise ValueError: for a host that is not ASCII.
        """
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"Unsupported scheme: {uri.scheme!r}")
        try:
            host = uri.host.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError(f"the host of {uri.toBytes()!r} is not ASCII") from None
        endpoint: IStreamClientEndpoint
        if isIPAddress(host):
            endpoint = TCP4ClientEndpoint(self.reactor, host, uri.port)
        elif isIPv6Address(host):
            endpoint = TCP6ClientEndpoint(self.reactor, host, uri.port)
        else:
            endpoint = HostnameEndpoint(self.reactor, host, uri.port)
        if uri.scheme == b"https":
            return wrapClientTLS(self.tls_policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return endpoint


class XmlRpcPeer:
    """
    An XML-RPC endpoint at one URL.

    @ivar url: the endpoint URL (C{http://} or C{https://}).
    @ivar timeout: seconds a call may take.
    @ivar max_response: the response body limit in bytes.
    """

    log = Logger()

    def __init__(
        self,
        url: str,
        reactor: IReactorTCP,
        tls_policy: IPolicyForHTTPS | None = None,
        pool: HTTPConnectionPool | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_response: int = DEFAULT_MAX_RESPONSE,
        threadpool: ThreadPool | None = None,
    ) -> None:
        """
        @param url: the endpoint URL.
        @param reactor: provides TCP and time (L{twisted.internet.interfaces.IReactorTime}); with a
            C{threadpool}, also thread results.
        @param tls_policy: builds TLS client options per host (the trust
            layer's mutual-TLS policy); C{None} for Agent's default, which
            verifies against the system roots and presents no certificate.
        @param pool: a persistent connection pool, usually shared by all
            peers; C{None} makes a private persistent one.
        @param timeout: seconds a call may take.
        @param max_response: the response body limit in bytes.
        @param threadpool: when given, encoding calls and decoding responses
            run in it.
        """
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"not an http:// or https:// URL: {url!r}")
        self.url = url
        self._url_bytes = url.encode("ascii")
        self._reactor = reactor
        self.pool = pool if pool is not None else HTTPConnectionPool(reactor, persistent=True)
        policy = tls_policy if tls_policy is not None else BrowserLikePolicyForHTTPS()
        self._agent = Agent.usingEndpointFactory(reactor, PeerEndpointFactory(reactor, policy), pool=self.pool)
        self.timeout = timeout
        self.max_response = max_response
        self._threadpool = threadpool

    def __repr__(self) -> str:
        return f"XmlRpcPeer({self.url!r})"

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        """
        Call C{method} with C{params}; C{None} members of structs are dropped.

        @return: a Deferred firing with the single value returned. It fails
            with L{PeerRequestError}, L{PeerConnectionError},
            L{PeerTLSError}, L{PeerTimeout}, L{PeerHTTPError},
            L{PeerFault}, L{PeerProtocolError} or L{PeerResponseTooLarge};
            cancelling it aborts the request and fails it with
            L{CancelledError}.
        """
        d = Deferred.fromCoroutine(self._call(method, params))
        d.addTimeout(self.timeout, self._reactor)  # type: ignore[arg-type]
        d.addErrback(self._timed_out, method)
        return d

    def _timed_out(self, reason: Failure, method: str) -> Failure:
        if reason.check(TimeoutError):
            raise PeerTimeout(self.url, method, f"no response within {self.timeout:g} seconds")
        return reason

    async def _run(self, function: Any, *args: Any) -> Any:
        if self._threadpool is None:
            return function(*args)
        return await deferToThreadPool(self._reactor, self._threadpool, function, *args)  # type: ignore[arg-type]

    async def _call(self, method: str, params: tuple[Any, ...]) -> Any:
        try:
            body = await self._run(dump_call, method, params)
        except (TypeError, ValueError, OverflowError) as e:
            raise PeerRequestError(self.url, method, f"parameters cannot be encoded: {_shorten(str(e))}") from None
        headers = Headers(
            {
                b"Content-Type": [b"text/xml; charset=utf-8"],
                b"User-Agent": [USER_AGENT],
            }
        )
        try:
            response = await self._agent.request(b"POST", self._url_bytes, headers, _BytesProducer(body))
        except Exception as e:
            raise self._transport_error(method, e) from None
        try:
            data = await _read_body(response, self.max_response)
        except _TooLarge:
            raise PeerResponseTooLarge(self.url, method, f"response longer than {self.max_response} bytes") from None
        except Exception as e:
            raise self._transport_error(method, e) from None
        if response.code != 200:
            phrase = response.phrase.decode("latin-1", "replace")
            detail = _shorten(data.decode("utf-8", "replace"), 120)
            reason = f"HTTP {response.code} {phrase}" + (f": {detail}" if detail else "")
            raise PeerHTTPError(self.url, method, response.code, reason)
        try:
            return await self._run(parse_response, data)
        except xmlrpc.client.Fault as fault:
            raise PeerFault(self.url, method, int(fault.faultCode), str(fault.faultString)) from None
        except XmlRpcDecodeError as e:
            raise PeerProtocolError(self.url, method, f"malformed response: {e.reason}") from None

    def _transport_error(self, method: str, error: BaseException) -> BaseException:
        """
        Classify a failure of the HTTP exchange: a L{PeerError}, or
        L{CancelledError} when the call was cancelled (by its timeout or
        its caller) wherever the exchange had got to.
        """
        reasons = _wrapped_reasons(error)
        if any(isinstance(reason, (CancelledError, ConnectingCancelledError)) for reason in reasons):
            return CancelledError()
        for reason in reasons:
            if isinstance(reason, (_SSLError, _VerificationError)):
                return PeerTLSError(self.url, method, f"TLS failure: {_describe(reason)}")
        for reason in reasons:
            if isinstance(reason, ConnectTimeoutError):
                return PeerTimeout(self.url, method, f"connection timed out: {_describe(reason)}")
        for reason in reasons:
            if isinstance(reason, (ConnectError, DNSLookupError)):
                return PeerConnectionError(self.url, method, f"cannot connect: {_describe(reason)}")
        if isinstance(error, RequestNotSent):
            return PeerConnectionError(self.url, method, "the connection closed before the request was sent")
        if isinstance(error, (ResponseFailed, RequestTransmissionFailed)):
            inner = "; ".join(_describe(r) for r in reasons[1:]) or _describe(error)
            return PeerConnectionError(self.url, method, f"connection failed without a response ({inner})")
        if isinstance(error, RequestGenerationFailed):
            return PeerRequestError(self.url, method, f"request could not be sent: {_describe(error)}")
        self.log.failure("unexpected failure calling {method} at {url}", Failure(error), method=method, url=self.url)
        return PeerError(self.url, method, f"unexpected failure: {_describe(error)}")
