"""
Tests for L{geniam.protocols.peer} against L{geniam.protocols.xmlrpc} over
real loopback TCP (port 0 on 127.0.0.1): the whole transport end to end.
"""

from __future__ import annotations

import xmlrpc.client
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from geniam.errors import GeniCode, success_struct
from geniam.protocols.marshal import PARSE_ERROR
from geniam.protocols.peer import PeerConnectionError, PeerHTTPError, PeerTimeout, XmlRpcPeer
from geniam.protocols.signatures import API_V3_SIGNATURES
from geniam.protocols.xmlrpc import GeniXmlRpcResource, make_site
from tests.protocols.test_xmlrpc import RecordingApi
from tests.loopback.test_xmlrpc import RawClient
from tests.protocols.test_signatures import VALID_ARGS, WRONG_VALUE


class SilentProtocol(Protocol):
    """Accept a connection, read the request, never answer."""

    def __init__(self, server: SilentFactory) -> None:
        self.server = server

    def dataReceived(self, data: bytes) -> None:
        if not self.server.request_seen.called:
            self.server.request_seen.callback(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.server.closed.callback(None)


class SilentFactory(Factory):
    """Build one L{SilentProtocol} and report its request and its close."""

    def __init__(self) -> None:
        self.request_seen: Deferred[bytes] = Deferred()
        self.closed: Deferred[None] = Deferred()

    def buildProtocol(self, addr: Any) -> Protocol:
        return SilentProtocol(self)


class LoopbackTestCase(TestCase):
    """Shared set-up: a reactor, a persistent pool closed after each test."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(self.pool.closeCachedConnections)

    def listen(self, factory: Any) -> int:
        """Listen on an ephemeral loopback port until the test ends."""
        port = self.reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)


class ServerAndClientTests(LoopbackTestCase):
    """The peer against the real resource."""

    def setUp(self) -> None:
        super().setUp()
        self.api = RecordingApi()
        self.connections = 0
        site = make_site(GeniXmlRpcResource(self.api, lambda request: "alice", max_body=64 * 1024), reactor=self.reactor)
        build = site.buildProtocol

        def counting_build(addr: Any) -> Any:
            self.connections += 1
            return build(addr)

        site.buildProtocol = counting_build  # type: ignore[method-assign]
        self.port = self.listen(site)
        self.peer = XmlRpcPeer(f"http://127.0.0.1:{self.port}/am/3.0", self.reactor, pool=self.pool, timeout=10)

    async def test_keep_alive(self) -> None:
        """Two calls travel on one persistent connection."""
        first = await self.peer.call("GetVersion")
        second = await self.peer.call("ListResources", [], {})
        self.assertEqual(first, success_struct({"method": "GetVersion"}))
        self.assertEqual(second, success_struct({"method": "ListResources"}))
        self.assertEqual(self.connections, 1)

    async def test_wrong_types_each_method(self) -> None:
        """For every method and parameter, a wrong type comes back as a BADARGS struct."""
        for method, signature in API_V3_SIGNATURES.items():
            for index, param in enumerate(signature.params):
                args = list(VALID_ARGS[method])
                args[index] = WRONG_VALUE[param.name]
                reply = await self.peer.call(method, *args)
                self.assertEqual(reply["code"]["geni_code"], GeniCode.BADARGS, (method, param.name))
        self.assertEqual(self.api.calls, [])
        self.assertEqual(self.connections, 1)

    async def test_unexpected_exception(self) -> None:
        """An exception in the API is logged and answered with a SERVERERROR struct."""

        def crash(*args: Any) -> None:
            raise RuntimeError("database on fire")

        self.api.behaviour["Describe"] = crash
        reply = await self.peer.call("Describe", *VALID_ARGS["Describe"])
        self.assertEqual(reply["code"]["geni_code"], GeniCode.SERVERERROR)
        self.assertNotIn("fire", reply["output"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    async def test_nil_sanitised(self) -> None:
        """None members in the API's answer never reach the client."""
        self.api.behaviour["Delete"] = lambda *args: success_struct(
            [{"geni_sliver_urn": "urn:v", "geni_allocation_status": "geni_unallocated", "geni_error": None}]
        )
        reply = await self.peer.call("Delete", *VALID_ARGS["Delete"])
        self.assertEqual(reply["value"], [{"geni_sliver_urn": "urn:v", "geni_allocation_status": "geni_unallocated"}])

    async def test_malformed_xml(self) -> None:
        """Malformed XML over a real socket is answered with fault -32700."""
        body = b"<methodCall><methodName>GetVersion</methodName><params>"
        client = RawClient(
            b"POST /am/3.0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        await connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port), client)
        reply = await client.closed
        self.assertTrue(reply.startswith(b"HTTP/1.1 200 "), reply)
        fault = self.assertRaises(xmlrpc.client.Fault, xmlrpc.client.loads, reply.partition(b"\r\n\r\n")[2])
        self.assertEqual(fault.faultCode, PARSE_ERROR)

    async def test_oversized_body(self) -> None:
        """A call over the server's limit is refused: 413, or a reset if the server closed mid-upload."""
        try:
            await self.peer.call("Allocate", "urn:publicid:IDN+x+slice+s", [], "r" * (1024 * 1024), {})
        except PeerHTTPError as e:
            self.assertEqual(e.status, 413)
        except PeerConnectionError:
            pass
        else:
            self.fail("an oversized call succeeded")
        self.assertEqual(self.api.calls, [])


class SilentServerTests(LoopbackTestCase):
    """A server that accepts TCP and never answers."""

    def setUp(self) -> None:
        super().setUp()
        self.server = SilentFactory()
        port = self.listen(self.server)
        self.peer = XmlRpcPeer(f"http://127.0.0.1:{port}/", self.reactor, pool=self.pool, timeout=0.2)

    async def test_timeout(self) -> None:
        """The call fails with TIMEDOUT and the connection is closed."""
        d = self.peer.call("GetVersion")
        request = await self.server.request_seen
        self.assertIn(b"<methodName>GetVersion</methodName>", request)
        error = await self.assertFailure(d, PeerTimeout)
        self.assertEqual(error.code, GeniCode.TIMEDOUT)
        await self.server.closed

    async def test_cancel(self) -> None:
        """Cancelling the call fails it with CancelledError and closes the connection."""
        d = self.peer.call("GetVersion")
        await self.server.request_seen
        d.cancel()
        await self.assertFailure(d, CancelledError)
        await self.server.closed


class RefusedConnectionTests(LoopbackTestCase):
    """A dead peer on loopback: nothing listens on the port any more."""

    async def test_refused(self) -> None:
        """A call to 127.0.0.1 on a closed port fails with L{PeerConnectionError}."""
        port = self.reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        number = port.getHost().port
        await port.stopListening()
        peer = XmlRpcPeer(f"http://127.0.0.1:{number}/am/3.0", self.reactor, pool=self.pool, timeout=10)
        error = await self.assertFailure(peer.call("GetVersion"), PeerConnectionError)
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("refused", error.reason.lower())
