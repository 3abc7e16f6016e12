"""
The bounds of the TLS XML-RPC listener (L{geniam.tap.common.listen_tls},
L{geniam.protocols.httpchannel}, L{geniam.protocols.listener}) over real
TLS with client certificates on 127.0.0.1: a dribbling client is cut off
at its deadline while another is served at once, a huge header line is
answered 431, malformed calls get faults in words, and one address cannot
hold more than its share of connections.

The listener's timers run on a L{twisted.internet.task.Clock}; the I/O on
the real reactor. Nothing sleeps: every step waits on a Deferred.
"""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IHandshakeListener, IPullProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from geniam.client import AMClient
from geniam.protocols.listener import ConnectionBudget, ListenerLimits
from geniam.protocols.marshal import dump_call, parse_response
from geniam.protocols.xmlrpc import GeniXmlRpcResource
from geniam.tap.common import listen_tls, serve_xmlrpc
from geniam.trust.domain import TrustDomain
from geniam.trust.tls import client_tls_options, server_tls_options
from tests.domains import copied_domain
from tests.loopback.test_am import make_domain
from tests.protocols.test_xmlrpc import RecordingApi, http_request, parse_http_responses
from tests.protocols.test_marshal import INTERNALS, MALFORMED_CALLS

TIMEOUT = 5.0


@implementer(IHandshakeListener)
class RawTLSClient(Protocol):
    """
    A TLS client speaking raw bytes: C{outcome} fires with C{"handshake"}
    once TLS is up, or C{"closed"} if the server closes first; C{closed}
    fires with everything received when the connection ends.
    """

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.outcome: Deferred[str] = Deferred()
        self.closed: Deferred[bytes] = Deferred()
        self.first_data: Deferred[None] = Deferred()

    def handshakeCompleted(self) -> None:
        if not self.outcome.called:
            self.outcome.callback("handshake")

    def dataReceived(self, data: bytes) -> None:
        self.received.append(data)
        if not self.first_data.called:
            self.first_data.callback(None)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if not self.outcome.called:
            self.outcome.callback("closed")
        self.closed.callback(b"".join(self.received))

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]


class ObservedBudget(ConnectionBudget):
    """A connection budget that tells waiters when connections close."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiters: list[tuple[int, Deferred[None]]] = []

    def when_at_most(self, total: int) -> Deferred[None]:
        """Fire once at most C{total} connections are open."""
        d: Deferred[None] = Deferred()
        if self.total <= total:
            d.callback(None)
        else:
            self._waiters.append((total, d))
        return d

    def release(self, host: str) -> None:
        super().release(host)
        ready = [(n, d) for n, d in self._waiters if self.total <= n]
        self._waiters = [(n, d) for n, d in self._waiters if self.total > n]
        for _, d in ready:
            d.callback(None)


class TLSListenerHarness(TestCase):
    """A GeniXmlRpcResource on a real TLS listener whose timers run on a Clock."""

    async def listen(self, limits: ListenerLimits = ListenerLimits(request_timeout=TIMEOUT), max_total: int | None = None) -> None:
        folder = copied_domain(self, "am", make_domain)
        self.domain = TrustDomain.open_or_create(Path(folder) / "trust", reactor=reactor)
        identity = self.domain.aggregate("am1")
        tls = server_tls_options(identity, self.domain.roots(), reactor)
        self.api = RecordingApi()
        resource = GeniXmlRpcResource(self.api, tls.peer_gid, reactor=reactor)
        self.clock = Clock()
        site, _ = serve_xmlrpc(resource, limits, self.clock)
        self.budget = ObservedBudget(max_total, limits.max_connections_per_client)
        self.port: Any = await listen_tls(reactor, 0, "127.0.0.1", tls, site, self.budget)
        self.addCleanup(self._stop)
        self.clients: list[RawTLSClient] = []

    async def _stop(self) -> None:
        for client in self.clients:
            if client.transport is not None and not client.closed.called:
                client.transport.loseConnection()
        await self.budget.when_at_most(0)
        await self.port.stopListening()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port.getHost().port}/"

    async def connect(self, source: str = "127.0.0.1", user: str = "alice") -> RawTLSClient:
        """Open a raw TLS connection from C{source} as C{user}."""
        options = client_tls_options(self.domain.user(user), self.domain.roots(), clock=reactor)
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port, options, bindAddress=(source, 0))
        client = RawTLSClient()
        self.clients.append(client)
        await connectProtocol(endpoint, client)
        return client

    async def served_client(self) -> None:
        """A well-behaved client's GetVersion is answered."""
        client = AMClient(reactor, self.url, self.domain.user("bob"), self.domain.roots())
        try:
            struct = await client.get_version()
        finally:
            await client.close()
        self.assertEqual(struct["code"]["geni_code"], 0)


class SlowClientTests(TLSListenerHarness):
    """A dribbling client is cut off at its deadline; others are served meanwhile."""

    async def test_dribbled_headers_cut_off_while_others_served(self) -> None:
        """A client sending one header line keeps its connection only until the request timeout."""
        await self.listen()
        dribbler = await self.connect()
        self.assertEqual(await dribbler.outcome, "handshake")
        dribbler.send(b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\n")
        await self.served_client()
        self.clock.advance(TIMEOUT - 0.5)
        dribbler.send(b"X-Still-Here: 1\r\n")
        await self.served_client()
        self.assertFalse(dribbler.closed.called)
        self.clock.advance(0.5)
        reply = await dribbler.closed
        self.assertTrue(reply.startswith(b"HTTP/1.1 408 "), reply)
        self.assertEqual([call[0] for call in self.api.calls], ["GetVersion", "GetVersion"])

    async def test_dribbled_body_cut_off(self) -> None:
        """A body that falls below the rate floor is cut off with 408."""
        await self.listen(ListenerLimits(request_timeout=TIMEOUT, min_body_rate=100))
        client = await self.connect()
        client.send(
            b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\nContent-Type: text/xml\r\n"
            b"Content-Length: 1000\r\nExpect: 100-continue\r\n\r\n"
        )
        await client.first_data  # "100 Continue": the server has the headers
        client.send(b"<?xml")
        await self.served_client()
        self.clock.advance(TIMEOUT + 5 / 100 - 0.01)
        await self.served_client()
        self.assertFalse(client.closed.called)
        self.clock.advance(0.01)
        reply = await client.closed
        self.assertIn(b"HTTP/1.1 408 ", reply)
        self.assertIn(b"slower than 100 bytes per second", reply)


@implementer(IPullProducer)
class HugeHeaderLine:
    """Send a header line of up to C{total} bytes, a piece at a time, until the server answers."""

    def __init__(self, client: RawTLSClient, total: int) -> None:
        self.client = client
        self.total = total
        self.sent = 0
        client.first_data.addCallback(lambda _: self.stopProducing())

    def resumeProducing(self) -> None:
        if self.sent >= self.total or self.client.first_data.called:
            self.stopProducing()
            return
        piece = min(65536, self.total - self.sent)
        self.sent += piece
        self.client.send(b"a" * piece)

    def stopProducing(self) -> None:
        transport = self.client.transport
        if transport is not None and getattr(transport, "producer", self) is not None:
            self.total = self.sent
            try:
                transport.unregisterProducer()
            except RuntimeError:
                pass


class OversizeTests(TLSListenerHarness):
    """A huge header line is answered 431 at once."""

    async def test_huge_header_line(self) -> None:
        """A 64 MiB header line gets 431 long before it is all sent, and the connection closes."""
        await self.listen()
        client = await self.connect()
        client.send(b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\nX-Huge: ")
        producer = HugeHeaderLine(client, 64 * 1024 * 1024)
        client.transport.registerProducer(producer, False)  # type: ignore[union-attr]
        await client.first_data
        reply = await client.closed
        self.assertTrue(reply.startswith(b"HTTP/1.1 431 "), reply[:200])
        self.assertLess(producer.sent, 16 * 1024 * 1024)
        self.assertEqual(self.api.calls, [])


class FaultWordingLoopbackTests(TLSListenerHarness):
    """Malformed calls over TLS are answered with faults in words."""

    async def test_malformed_calls(self) -> None:
        """Every malformed call of the matrix, pipelined on one connection, gets its fault in words."""
        await self.listen()
        client = await self.connect()
        bodies = [body for body, _, _ in MALFORMED_CALLS.values()]
        requests = [http_request(body) for body in bodies[:-1]]
        requests.append(http_request(bodies[-1], headers={b"Connection": b"close"}))
        client.send(b"".join(requests))
        responses = parse_http_responses(await client.closed)
        self.assertEqual(len(responses), len(bodies))
        for (name, (_, code, words)), (status, _, body) in zip(MALFORMED_CALLS.items(), responses):
            self.assertEqual(status, 200, name)
            fault = self.assertRaises(xmlrpc.client.Fault, parse_response, body)
            self.assertEqual(fault.faultCode, code, name)
            self.assertIn(words, fault.faultString, name)
            self.assertIsNone(INTERNALS.search(fault.faultString), fault.faultString)
        self.assertEqual(self.api.calls, [])


class PerClientCapTests(TLSListenerHarness):
    """One address holds at most --max-connections-per-client connections."""

    async def test_cap(self) -> None:
        """The third connection from one address is closed at once; others and later ones are served."""
        await self.listen(ListenerLimits(request_timeout=TIMEOUT, max_connections_per_client=2))
        first = await self.connect()
        second = await self.connect()
        self.assertEqual([await first.outcome, await second.outcome], ["handshake", "handshake"])
        third = await self.connect()
        self.assertEqual(await third.outcome, "closed")
        self.assertEqual(await third.closed, b"")
        elsewhere = await self.connect(source="127.0.0.2")
        self.assertEqual(await elsewhere.outcome, "handshake")
        self.assertEqual(self.budget.open_from("127.0.0.1"), 2)

        first.transport.loseConnection()  # type: ignore[union-attr]
        await self.budget.when_at_most(2)
        again = await self.connect()
        self.assertEqual(await again.outcome, "handshake")
        again.send(http_request(dump_call("GetVersion", ({},)), headers={b"Connection": b"close"}))
        status, _, _ = parse_http_responses(await again.closed)[0]
        self.assertEqual(status, 200)
