"""
Tests for L{geniam.protocols.peer}, driven by a L{MemoryReactorClock}: the
client talks to the real server resource through an in-memory pump, or to a
scripted server on a L{StringTransport}.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionRefusedError, DNSLookupError
from twisted.internet.interfaces import IProtocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI, HTTPConnectionPool
from twisted.web.error import SchemeNotSupported
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from geniam.errors import GeniCode, GeniError, error_struct, success_struct
from geniam.protocols.marshal import METHOD_NOT_FOUND, dump_fault, dump_response
from geniam.protocols.peer import (
    PeerConnectionError,
    PeerError,
    PeerFault,
    PeerHTTPError,
    PeerProtocolError,
    PeerRequestError,
    PeerResponseTooLarge,
    PeerTimeout,
    PeerEndpointFactory,
    PeerTLSError,
    XmlRpcPeer,
)
from geniam.protocols.xmlrpc import GeniXmlRpcResource, make_site
from tests.protocols.test_xmlrpc import InlineThreadPool, RecordingApi

TIMEOUT = 30.0


def http_response(body: bytes, status: bytes = b"200 OK", content_type: bytes = b"text/xml") -> bytes:
    """The bytes of an HTTP/1.1 response with a Content-Length."""
    return (
        b"HTTP/1.1 " + status + b"\r\nContent-Type: " + content_type + b"\r\nContent-Length: %d\r\n\r\n" % (len(body),) + body
    )


class ClientHarness:
    """A peer on a memory reactor, with the real server listening on it."""

    def __init__(self, url: str = "http://127.0.0.1:8080/am/3.0", **peer_kwargs: Any) -> None:
        self.reactor = MemoryReactorClock()
        self.api = RecordingApi()
        self.site = make_site(GeniXmlRpcResource(self.api, lambda request: "alice"), reactor=self.reactor)
        self.reactor.listenTCP(8080, self.site, interface="127.0.0.1")
        self.pool = HTTPConnectionPool(self.reactor, persistent=True)
        peer_kwargs.setdefault("timeout", TIMEOUT)
        self.peer = XmlRpcPeer(url, self.reactor, pool=self.pool, **peer_kwargs)

    def connect_server(self) -> IOPump:
        """Complete the pending connection to the real server and pump it."""
        self.reactor.advance(0)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        pump.flush()
        return pump

    def accept_silently(self) -> tuple[IProtocol, StringTransport]:
        """Accept the pending connection on a transport nobody answers from."""
        self.reactor.advance(0)
        host, port, factory, _, _ = self.reactor.tcpClients.pop(0)
        address = IPv4Address("TCP", host, port)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport


class RoundTripTests(SynchronousTestCase):
    """Calls through the real server resource."""

    def setUp(self) -> None:
        self.harness = ClientHarness()

    def test_call(self) -> None:
        """A call fires with the server's GENI struct; the server saw the parameters."""
        d = self.harness.peer.call("Status", ["urn:publicid:IDN+x+slice+s"], [], {})
        self.harness.connect_server()
        self.assertEqual(self.successResultOf(d), success_struct({"method": "Status"}))
        self.assertEqual(self.harness.api.calls, [("Status", "alice", ["urn:publicid:IDN+x+slice+s"], [], {})])

    def test_keep_alive_reuses_connection(self) -> None:
        """A second call reuses the pooled connection instead of opening another."""
        first = self.harness.peer.call("GetVersion")
        pump = self.harness.connect_server()
        self.successResultOf(first)
        second = self.harness.peer.call("GetVersion", {})
        self.harness.reactor.advance(0)
        self.assertEqual(self.harness.reactor.tcpClients, [])
        pump.flush()
        self.assertEqual(self.successResultOf(second)["value"], {"method": "GetVersion"})
        self.assertEqual(len(self.harness.api.calls), 2)

    def test_none_members_not_sent(self) -> None:
        """C{None} members of struct parameters are dropped, never sent as nil."""
        d = self.harness.peer.call("GetVersion", {"geni_x": None, "geni_y": 1})
        self.harness.connect_server()
        self.successResultOf(d)
        self.assertEqual(self.harness.api.calls[0][2], {"geni_y": 1})

    def test_error_struct_is_a_result(self) -> None:
        """A GENI error struct from the peer is a successful call: it is not interpreted here."""
        d = self.harness.peer.call("Status", "not-a-list", [], {})
        self.harness.connect_server()
        self.assertEqual(self.successResultOf(d)["code"]["geni_code"], GeniCode.BADARGS)

    def test_fault(self) -> None:
        """A fault from the peer fails with L{PeerFault} carrying its code."""
        d = self.harness.peer.call("NoSuchMethod")
        self.harness.connect_server()
        error = self.failureResultOf(d, PeerFault).value
        self.assertEqual(error.fault_code, METHOD_NOT_FOUND)
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("NoSuchMethod", error.output)

    def test_thread_pool(self) -> None:
        """With a thread pool, encoding and decoding run in it."""
        pool = InlineThreadPool()
        harness = ClientHarness(threadpool=pool)
        harness.reactor.callFromThread = lambda f, *a, **kw: f(*a, **kw)  # type: ignore[attr-defined]
        d = harness.peer.call("GetVersion")
        harness.connect_server()
        self.successResultOf(d)
        self.assertEqual(pool.calls, ["dump_call", "parse_response"])


class TimeoutAndCancelTests(SynchronousTestCase):
    """Calls end on time, and cancelling aborts the request."""

    def setUp(self) -> None:
        self.harness = ClientHarness()

    def test_timeout_without_answer(self) -> None:
        """A server that accepts and never answers fails the call with TIMEDOUT and the connection is aborted."""
        d = self.harness.peer.call("GetVersion")
        _, transport = self.harness.accept_silently()
        self.assertIn(b"POST /am/3.0 HTTP/1.1", transport.value())
        self.harness.reactor.advance(TIMEOUT - 1)
        self.assertNoResult(d)
        self.harness.reactor.advance(1)
        error = self.failureResultOf(d, PeerTimeout).value
        self.assertEqual(error.code, GeniCode.TIMEDOUT)
        self.assertEqual(error.as_struct()["code"]["geni_code"], GeniCode.TIMEDOUT)
        self.assertTrue(transport.disconnected)

    def test_timeout_while_connecting(self) -> None:
        """A connection that never completes times out too, and the attempt is stopped."""
        d = self.harness.peer.call("GetVersion")
        self.harness.reactor.advance(0)
        connector = self.harness.reactor.connectors[0]
        self.harness.reactor.advance(TIMEOUT)
        self.failureResultOf(d, PeerTimeout)
        self.assertTrue(connector.stoppedConnecting)

    def test_timeout_while_reading_body(self) -> None:
        """A body that stops arriving times out."""
        d = self.harness.peer.call("GetVersion")
        protocol, transport = self.harness.accept_silently()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n<?xml")
        self.harness.reactor.advance(TIMEOUT)
        self.failureResultOf(d, PeerTimeout)
        self.assertEqual(transport.producerState, "stopped")

    def test_cancel_aborts_request(self) -> None:
        """Cancelling a call waiting for its response aborts the connection."""
        d = self.harness.peer.call("GetVersion")
        _, transport = self.harness.accept_silently()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(transport.disconnected)
        self.harness.reactor.advance(TIMEOUT)

    def test_cancel_while_connecting(self) -> None:
        """Cancelling before the connection exists stops the attempt."""
        d = self.harness.peer.call("GetVersion")
        self.harness.reactor.advance(0)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.harness.reactor.connectors[0].stoppedConnecting)


class ResponseErrorTests(SynchronousTestCase):
    """Each kind of failure has its own exception type and GENI code."""

    def setUp(self) -> None:
        self.harness = ClientHarness(max_response=1000)

    def respond(self, data: bytes) -> tuple[Deferred[Any], StringTransport]:
        """Call GetVersion and answer with C{data}."""
        d = self.harness.peer.call("GetVersion")
        protocol, transport = self.harness.accept_silently()
        protocol.dataReceived(data)
        return d, transport

    def test_response_too_large(self) -> None:
        """A declared body over the limit fails with L{PeerResponseTooLarge} and stops reading."""
        d, transport = self.respond(http_response(dump_response("x" * 2000)))
        error = self.failureResultOf(d, PeerResponseTooLarge).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("1000 bytes", error.reason)
        self.assertEqual(transport.producerState, "stopped")

    def test_streamed_response_too_large(self) -> None:
        """A chunked body is refused once it passes the limit."""
        d = self.harness.peer.call("GetVersion")
        protocol, transport = self.harness.accept_silently()
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        protocol.dataReceived(b"258\r\n" + b"a" * 600 + b"\r\n")
        self.assertNoResult(d)
        protocol.dataReceived(b"258\r\n" + b"a" * 600 + b"\r\n")
        self.failureResultOf(d, PeerResponseTooLarge)

    def test_http_error(self) -> None:
        """An HTTP error status fails with L{PeerHTTPError} (RPCERROR) and its text."""
        d, _ = self.respond(http_response(b"no such page", b"404 Not Found", b"text/plain"))
        error = self.failureResultOf(d, PeerHTTPError).value
        self.assertEqual((error.status, error.code), (404, GeniCode.RPCERROR))
        self.assertIn("404 Not Found", error.reason)
        self.assertIn("no such page", error.reason)

    def test_http_too_large(self) -> None:
        """HTTP 413 (the request was over the peer's limit) is TOOBIG."""
        d, _ = self.respond(http_response(b"request body too large", b"413 Content Too Large", b"text/plain"))
        error = self.failureResultOf(d, PeerHTTPError).value
        self.assertEqual((error.status, error.code), (413, GeniCode.TOOBIG))
        self.assertIn("too large", error.reason)

    def test_http_busy(self) -> None:
        """HTTP 503 means busy: SERVERBUSY."""
        d, _ = self.respond(http_response(b"", b"503 Service Unavailable"))
        self.assertEqual(self.failureResultOf(d, PeerHTTPError).value.code, GeniCode.SERVERBUSY)

    def test_malformed_response(self) -> None:
        """A response that is not XML-RPC fails with L{PeerProtocolError}."""
        d, _ = self.respond(http_response(b"<html>hello</html>"))
        error = self.failureResultOf(d, PeerProtocolError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)

    def test_fault_busy(self) -> None:
        """Fault -32001 is SERVERBUSY."""
        d, _ = self.respond(http_response(dump_fault(-32001, "busy")))
        self.assertEqual(self.failureResultOf(d, PeerFault).value.code, GeniCode.SERVERBUSY)

    def test_connection_refused(self) -> None:
        """A refused connection fails with L{PeerConnectionError}."""
        d = self.harness.peer.call("GetVersion")
        self.harness.reactor.advance(0)
        ConnectionCompleter(self.harness.reactor).failOnce(Failure(ConnectionRefusedError()))
        self.harness.reactor.advance(1)
        error = self.failureResultOf(d, PeerConnectionError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("refused", error.reason)

    def test_closed_without_response(self) -> None:
        """A connection closed before any response fails with L{PeerConnectionError}."""
        d = self.harness.peer.call("GetVersion")
        protocol, _ = self.harness.accept_silently()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, PeerConnectionError)

    def test_tls_failure(self) -> None:
        """A TLS error on the connection fails with L{PeerTLSError}."""
        d = self.harness.peer.call("GetVersion")
        protocol, _ = self.harness.accept_silently()
        protocol.connectionLost(Failure(SSL.Error([("SSL routines", "", "certificate verify failed")])))
        error = self.failureResultOf(d, PeerTLSError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("certificate verify failed", error.reason)

    def test_unencodable_parameters(self) -> None:
        """Parameters without an XML-RPC form fail with L{PeerRequestError} before connecting."""
        d = self.harness.peer.call("GetVersion", {"x": object()})
        self.assertEqual(self.failureResultOf(d, PeerRequestError).value.code, GeniCode.BADARGS)
        self.harness.reactor.advance(0)
        self.assertEqual(self.harness.reactor.tcpClients, [])

    def test_errors_are_geni_errors(self) -> None:
        """Every peer failure is a L{GeniError} whose struct names peer and method."""
        error = PeerHTTPError("https://am.example/am/3.0", "Allocate", 500, "HTTP 500")
        self.assertIsInstance(error, GeniError)
        self.assertIsInstance(error, PeerError)
        struct = error.as_struct()
        self.assertEqual(struct, error_struct(GeniCode.RPCERROR, "Allocate at https://am.example/am/3.0: HTTP 500"))
        self.assertEqual(repr(error), "PeerHTTPError(RPCERROR, 'Allocate at https://am.example/am/3.0: HTTP 500')")

    def test_transport_error_classification(self) -> None:
        """DNS failures are connection errors; unknown failures are logged PeerErrors."""
        peer = self.harness.peer
        self.assertIsInstance(peer._transport_error("X", DNSLookupError("nowhere")), PeerConnectionError)
        self.assertIsInstance(peer._transport_error("X", UnknownFailure()), PeerError)
        self.assertEqual(len(self.flushLoggedErrors(UnknownFailure)), 1)

    def test_bad_url(self) -> None:
        """Only http and https URLs are accepted."""
        self.assertRaises(ValueError, XmlRpcPeer, "ftp://am.example/", MemoryReactorClock())


class UnknownFailure(Exception):
    """An exception the classifier does not know."""


@implementer(IPolicyForHTTPS)
class RecordingPolicy:
    """A TLS policy recording the hosts it was asked about."""

    def __init__(self) -> None:
        self.asked: list[tuple[bytes, int]] = []

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        self.asked.append((hostname, port))
        from twisted.internet.ssl import optionsForClientTLS

        return optionsForClientTLS(hostname.decode("ascii"))


class TLSPolicyTests(SynchronousTestCase):
    """The injected TLS policy makes the TLS options."""

    def test_policy_used(self) -> None:
        """An https call asks the policy for the peer's host and port."""
        policy = RecordingPolicy()
        harness = ClientHarness("https://am.example:12369/am/3.0", tls_policy=policy)
        harness.reactor.advance(0)
        harness.peer.call("GetVersion")
        harness.reactor.advance(0)
        self.assertEqual(policy.asked, [(b"am.example", 12369)])


class TCPStringTransport(StringTransport):
    """A L{StringTransport} accepting the TCP option the HTTP client sets."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        """Ignore the option."""


class DirectConnectionTests(SynchronousTestCase):
    """A URL with an IP literal host is reached over plain TCP, without name resolution."""

    def test_refused_ipv4_reported_at_once(self) -> None:
        """A refused connection to an IPv4 literal fails the call without the clock moving."""
        harness = ClientHarness("http://127.0.0.1:8081/am/3.0")
        d = harness.peer.call("GetVersion")
        self.assertEqual([client[:2] for client in harness.reactor.tcpClients], [("127.0.0.1", 8081)])
        ConnectionCompleter(harness.reactor).failOnce(Failure(ConnectionRefusedError()))
        error = self.failureResultOf(d, PeerConnectionError).value
        self.assertEqual(error.code, GeniCode.RPCERROR)
        self.assertIn("refused", error.reason)

    def test_refused_ipv6_reported_at_once(self) -> None:
        """A bracketed IPv6 literal is connected to directly, and its refusal reported at once."""
        harness = ClientHarness("http://[::1]:8081/am/3.0")
        d = harness.peer.call("GetVersion")
        self.assertEqual([client[:2] for client in harness.reactor.tcpClients], [("::1", 8081)])
        ConnectionCompleter(harness.reactor).failOnce(Failure(ConnectionRefusedError()))
        self.failureResultOf(d, PeerConnectionError)

    def test_https_literal_uses_policy(self) -> None:
        """An https URL with an IP literal connects directly, with TLS options from the policy."""
        policy = RecordingPolicy()
        harness = ClientHarness("https://127.0.0.1:12369/am/3.0", tls_policy=policy)
        d = harness.peer.call("GetVersion")
        self.assertEqual(policy.asked, [(b"127.0.0.1", 12369)])
        self.assertEqual([client[:2] for client in harness.reactor.tcpClients], [("127.0.0.1", 12369)])
        host, port, factory, _, _ = harness.reactor.tcpClients.pop(0)
        address = IPv4Address("TCP", host, port)
        protocol = factory.buildProtocol(address)
        assert protocol is not None
        transport = TCPStringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        self.assertEqual(transport.value()[:1], b"\x16", "the client did not start a TLS handshake")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.failureResultOf(d, PeerConnectionError)

    def test_endpoint_kinds(self) -> None:
        """IPv4 and IPv6 literals get TCP endpoints, host names a HostnameEndpoint."""
        factory = PeerEndpointFactory(MemoryReactorClock(), RecordingPolicy())
        self.assertIsInstance(factory.endpointForURI(URI.fromBytes(b"http://192.0.2.1:80/")), TCP4ClientEndpoint)
        self.assertIsInstance(factory.endpointForURI(URI.fromBytes(b"http://[2001:db8::1]:80/")), TCP6ClientEndpoint)
        self.assertIsInstance(factory.endpointForURI(URI.fromBytes(b"http://am.example:80/")), HostnameEndpoint)
        self.assertRaises(SchemeNotSupported, factory.endpointForURI, URI.fromBytes(b"ftp://192.0.2.1/"))
