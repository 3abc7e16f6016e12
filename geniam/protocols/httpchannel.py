# -*- test-case-name: tests.protocols.test_httpchannel -*-
"""
An HTTP/1.1 server channel that bounds what one client may hold.

L{GuardedHTTPChannel} is Twisted's L{HTTPChannel} with three bounds:

  - B{a request must arrive whole in bounded time.} Its request line and
    headers must arrive within C{request_timeout} seconds of its first
    byte (for the first request of a connection: of the connection
    itself, so the TLS handshake counts). Its body must then keep up a
    rate floor: by C{t} seconds after the headers, at least
    C{min_body_rate * (t - request_timeout)} bytes must have arrived. A
    request that falls behind is answered C{408 Request Timeout} and the
    connection is closed; a connection that sent nothing of a request is
    closed without an answer. Bytes that trickle in do not push either
    deadline back.
  - B{no line longer than L{MAX_LINE_LENGTH}}, and no header block larger
    than L{MAX_HEADER_BLOCK}: an over-long request line is answered
    C{414 URI Too Long}, an over-long header line or block
    C{431 Request Header Fields Too Large}, at once, without buffering the
    line.
  - between requests on a kept-alive connection, the idle timeout of
    L{twisted.web.http.HTTPFactory} (C{timeout}) applies as before.

Every refusal writes its response directly, closes the connection,
discards whatever the client still sends, and aborts the connection if the
client has not closed its side within C{request_timeout} seconds (a TLS
close waits for the client's close alert). All timers come from the
site's reactor (L{twisted.web.http.HTTPFactory.reactor}), so tests drive
them with L{twisted.internet.task.Clock}.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel

DEFAULT_REQUEST_TIMEOUT = 10.0
"""Default seconds for a request line and headers to arrive."""

DEFAULT_IDLE_TIMEOUT = 300.0
"""
Default seconds a kept-alive connection may idle between requests; above
the 240 seconds for which L{twisted.web.client.HTTPConnectionPool} keeps
one, so a pooled client closes first.
"""

DEFAULT_MIN_BODY_RATE = 500
"""Default rate floor for a request body, in bytes per second."""

MAX_LINE_LENGTH = 16384
"""The longest request line or header line accepted, in bytes."""

MAX_HEADER_BLOCK = 16384
"""The most bytes accepted for a request line and all its headers together."""

_REASONS: dict[int, bytes] = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


def peer_name(address: object) -> str:
    """C{host:port} of an address, for the log."""
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    return f"{host}:{port}" if host is not None else str(address)


class GuardedHTTPChannel(HTTPChannel):
    """
    An L{HTTPChannel} that cuts off slow and oversized requests (see the module docstring).

    L{geniam.protocols.xmlrpc.GeniSite} sets the instance attributes below
    on each channel it builds.

    @ivar request_timeout: seconds for a request's headers; also the grace
        for a body before its rate floor applies, and for a refused client
        to close.
    @ivar min_body_rate: the rate floor for a body, in bytes per second.
    @ivar clock: the time source of the deadlines.
    """

    MAX_LENGTH = MAX_LINE_LENGTH
    totalHeadersSize = MAX_HEADER_BLOCK

    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    min_body_rate: int = DEFAULT_MIN_BODY_RATE
    clock: IReactorTime | None = None

    _log = Logger()
    _refused = False
    _receiving = False
    _in_body = False
    _deadline: IDelayedCall | None = None
    _request_bytes = 0
    _request_lines = 0
    _body_started = 0.0
    _body_bytes = 0
    open_set: set["GuardedHTTPChannel"] | None = None
    """The site's set of connected channels, which this one joins while connected."""

    def connectionMade(self) -> None:
        """Join the site's open set and start the first request's deadline with the connection."""
        if self.open_set is not None:
            self.open_set.add(self)
        self.abortTimeout = self.request_timeout  # type: ignore[assignment]
        super().connectionMade()
        self._begin_request()

    def dataReceived(self, data: bytes) -> None:
        """Discard input once refused; a byte after an idle spell starts a request's deadline."""
        if self._refused:
            return
        if not self._receiving and not self._handlingRequest:
            self._begin_request()
        if self._receiving and not self._in_body:
            self._request_bytes += len(data)
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        """Refuse a header block over L{MAX_HEADER_BLOCK} with 431; pass other lines on."""
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self.refuse(431, f"the request headers are over {self.totalHeadersSize} bytes")
            return
        self._request_lines += 1
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """Answer an over-long request line with 414 and an over-long header line with 431, at once."""
        if self._request_lines == 0:
            self.refuse(414, f"the request line is over {self.MAX_LENGTH} bytes")
        else:
            self.refuse(431, f"a request header line is over {self.MAX_LENGTH} bytes")

    def allHeadersReceived(self) -> None:
        """Switch the deadline from the headers to the body's rate floor."""
        super().allHeadersReceived()
        if self._refused or self.length == 0:
            return
        self._in_body = True
        self._body_started = self._now()
        self._body_bytes = 0

    def rawDataReceived(self, data: bytes) -> None:
        """Count the body's bytes for its rate floor."""
        if self._refused:
            return
        if self._in_body and not self._handlingRequest:
            self._body_bytes += len(data)
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        """The request is whole: stop its deadline, then process it."""
        self._end_request()
        super().allContentReceived()

    def _respondToBadRequestAndDisconnect(self) -> None:
        # Twisted's quick 400 leaves the channel parsing what follows.
        self.refuse(400, "the request is not valid HTTP/1.1")

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Stop the deadline with the connection and leave the site's open set."""
        self._end_request()
        if self.open_set is not None:
            self.open_set.discard(self)
        super().connectionLost(reason)

    def refuse(self, status: int, message: str) -> None:
        """
        Answer C{status} with C{message}, close the connection, and discard
        anything more the client sends; abort if it does not close within
        C{request_timeout} seconds.
        """
        if self._refused:
            return
        self._log.info(
            "refused a request from {peer}: {status} {message}",
            peer=self._peer(),
            status=status,
            message=message,
        )
        body = message.encode("utf-8") + b"\n"
        reason = _REASONS.get(status, b"Refused")
        self._close(
            b"HTTP/1.1 %d %s\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )

    def _close(self, response: bytes) -> None:
        self._refused = True
        self._end_request()
        self.setTimeout(None)
        if self.transport is None:
            return
        if response:
            self.transport.write(response)
        if self._abortingCall is None and self.abortTimeout is not None:
            self._abortingCall = self.callLater(self.abortTimeout, self.forceAbortClient)
        self.loseConnection()

    def _now(self) -> float:
        assert self.clock is not None, "the site sets the channel's clock"
        return self.clock.seconds()

    def _peer(self) -> str:
        return peer_name(self.transport.getPeer()) if self.transport is not None else "?"

    def _begin_request(self) -> None:
        self._receiving = True
        self._in_body = False
        self._request_bytes = 0
        self._request_lines = 0
        self._schedule(self.request_timeout)

    def _end_request(self) -> None:
        self._receiving = False
        self._in_body = False
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _schedule(self, delay: float) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = self.callLater(delay, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        if self._in_body:
            due = self._body_started + self.request_timeout + self._body_bytes / self.min_body_rate
            remaining = due - self._now()
            if remaining > 0:
                self._schedule(remaining)
                return
            self.refuse(408, f"the request body arrived slower than {self.min_body_rate} bytes per second")
        elif self._request_bytes:
            self.refuse(408, f"the request headers did not arrive within {self.request_timeout:g} seconds")
        else:
            self._log.debug("closed a connection from {peer} that sent no request", peer=self._peer())
            self._close(b"")
