"""
Tests for L{geniam.protocols.xmlrpc} over a real loopback socket: the body
limit answers 413 and closes before the body is sent.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from geniam.protocols.xmlrpc import GeniXmlRpcResource, make_site
from tests.protocols.test_xmlrpc import RecordingApi


class RawClient(Protocol):
    """Send fixed bytes on connect; fire C{closed} with everything received."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received: list[bytes] = []
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.closed.callback(b"".join(self.received))


class LoopbackBodyLimitTests(TestCase):
    """The limit works on a real TCP connection."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.api = RecordingApi()
        resource = GeniXmlRpcResource(self.api, lambda request: "alice", max_body=1000)
        self.port: Any = self.reactor.listenTCP(0, make_site(resource, reactor=self.reactor), interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(self.port.stopListening)

    async def exchange(self, payload: bytes) -> bytes:
        """Send C{payload} on a new connection; return what came back before the server closed."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port.getHost().port)
        client = RawClient(payload)
        await connectProtocol(endpoint, client)
        return await client.closed

    async def test_declared_length_refused(self) -> None:
        """Headers declaring 5 MiB get 413 and a closed connection without a body byte sent."""
        reply = await self.exchange(
            b"POST /am/3.0 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 5242880\r\n\r\n"
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)
        self.assertIn(b"Connection: close", reply)
        self.assertEqual(self.api.calls, [])

    async def test_chunked_refused(self) -> None:
        """A chunked body passing the limit gets 413 and a closed connection."""
        reply = await self.exchange(
            b"POST /am/3.0 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"3e9\r\n"
            + b"a" * 1001
        )
        self.assertTrue(reply.startswith(b"HTTP/1.1 413 "), reply)
        self.assertEqual(self.api.calls, [])
