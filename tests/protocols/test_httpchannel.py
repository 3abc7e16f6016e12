"""
Tests for L{geniam.protocols.httpchannel}: slow and oversized requests are
cut off, driven in memory on a L{StringTransport} with a
L{twisted.internet.task.Clock} for every timer.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from geniam.protocols.httpchannel import MAX_HEADER_BLOCK, MAX_LINE_LENGTH, GuardedHTTPChannel
from geniam.protocols.marshal import dump_call
from geniam.protocols.xmlrpc import GeniXmlRpcResource, make_site
from tests.protocols.test_xmlrpc import CLIENT, RecordingApi, http_request, parse_http_responses

TIMEOUT = 5.0
RATE = 100
IDLE = 60.0
HEAD = b"POST /am/3.0 HTTP/1.1\r\nHost: am.example\r\n"


class ChannelHarness(SynchronousTestCase):
    """A L{GeniSite} with short bounds on a clock, reached through in-memory connections."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.api = RecordingApi()
        resource = GeniXmlRpcResource(self.api, lambda request: "alice")
        self.site = make_site(resource, reactor=self.clock, request_timeout=TIMEOUT, min_body_rate=RATE, timeout=IDLE)

    def connect(self) -> tuple[Any, StringTransport]:
        """Open a connection; return its channel and transport."""
        channel = self.site.buildProtocol(CLIENT)
        self.assertIsInstance(channel, GuardedHTTPChannel)
        transport = StringTransport(peerAddress=CLIENT)
        channel.makeConnection(transport)
        return channel, transport

    def assertOpen(self, transport: StringTransport) -> None:
        """Nothing was answered and the connection is open."""
        self.assertEqual(transport.value(), b"")
        self.assertFalse(transport.disconnecting)

    def assertRefused(self, transport: StringTransport, status: int) -> bytes:
        """The one response is C{status} with C{Connection: close}, and the connection is closing."""
        responses = parse_http_responses(transport.value())
        self.assertEqual([code for code, _, _ in responses], [status], transport.value())
        self.assertEqual(responses[0][1][b"connection"], b"close")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.api.calls, [])
        return responses[0][2]


class HeaderDeadlineTests(ChannelHarness):
    """Request lines and headers must arrive within the request timeout."""

    def test_dribbled_headers_cut_off(self) -> None:
        """A header line a second does not push the deadline back: 408 at the deadline."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD)
        for second in range(4):
            self.clock.advance(1)
            channel.dataReceived(b"X-Slow-%d: y\r\n" % (second,))
        self.clock.advance(TIMEOUT - 4 - 0.01)
        self.assertOpen(transport)
        self.clock.advance(0.01)
        body = self.assertRefused(transport, 408)
        self.assertIn(b"did not arrive within 5 seconds", body)

    def test_silent_connection_closed(self) -> None:
        """A connection that sends nothing is closed at the deadline without an answer."""
        channel, transport = self.connect()
        self.clock.advance(TIMEOUT - 0.01)
        self.assertOpen(transport)
        self.clock.advance(0.01)
        self.assertEqual(transport.value(), b"")
        self.assertTrue(transport.disconnecting)

    def test_prompt_request_served(self) -> None:
        """A request arriving whole in time is served, and the deadline is gone with it."""
        channel, transport = self.connect()
        self.clock.advance(TIMEOUT - 1)
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        self.clock.advance(TIMEOUT)
        self.assertEqual([code for code, _, _ in parse_http_responses(transport.value())], [200])
        self.assertFalse(transport.disconnecting)

    def test_idle_keep_alive_then_slow_request(self) -> None:
        """
        Between requests only the idle timeout runs; the next request's
        deadline starts with its first byte.
        """
        channel, transport = self.connect()
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        transport.clear()
        self.clock.advance(IDLE - 1)
        self.assertOpen(transport)
        channel.dataReceived(b"POST /am/3.0 HTTP/1.1\r\n")
        self.clock.advance(TIMEOUT)
        self.assertEqual([code for code, _, _ in parse_http_responses(transport.value())], [408])
        self.assertTrue(transport.disconnecting)

    def test_idle_timeout(self) -> None:
        """A kept-alive connection idle for the idle timeout is closed."""
        channel, transport = self.connect()
        channel.dataReceived(http_request(dump_call("GetVersion", ())))
        self.clock.advance(IDLE - 0.01)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.01)
        self.assertTrue(transport.disconnecting)

    def test_refused_client_aborted(self) -> None:
        """A refused client that does not close its side is aborted after the grace."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD)
        self.clock.advance(TIMEOUT)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        channel.dataReceived(b"X-More: still here\r\n")
        self.clock.advance(TIMEOUT)
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(parse_http_responses(transport.value())), 1)


class BodyRateTests(ChannelHarness):
    """A body must keep up the rate floor once the grace after its headers has passed."""

    def body_head(self, length: int) -> bytes:
        return HEAD + b"Content-Type: text/xml\r\nContent-Length: %d\r\n\r\n" % (length,)

    def test_slow_body_above_the_floor_served(self) -> None:
        """A body sent at the floor, taking far longer than the grace, is served."""
        body = dump_call("Allocate", ["urn:s", [], "r" * 1800, {}])
        self.assertGreater(len(body) / RATE, 3 * TIMEOUT)
        channel, transport = self.connect()
        channel.dataReceived(self.body_head(len(body)))
        for offset in range(0, len(body), RATE):
            channel.dataReceived(body[offset : offset + RATE])
            self.clock.advance(1)
        self.assertEqual([code for code, _, _ in parse_http_responses(transport.value())], [200])
        self.assertEqual(len(self.api.calls), 1)

    def test_dribbled_body_cut_off(self) -> None:
        """A byte every two seconds keeps the body far below the floor: 408 soon after the grace."""
        channel, transport = self.connect()
        channel.dataReceived(self.body_head(1000))
        channel.dataReceived(b"<")
        self.clock.advance(2)
        channel.dataReceived(b"?")
        self.clock.advance(TIMEOUT - 2)
        self.assertOpen(transport)
        self.clock.advance(2 / RATE)
        body = self.assertRefused(transport, 408)
        self.assertIn(b"slower than 100 bytes per second", body)

    def test_stalled_body_cut_off(self) -> None:
        """A body that stops half way is cut off once the floor overtakes what arrived."""
        channel, transport = self.connect()
        channel.dataReceived(self.body_head(1000))
        channel.dataReceived(b"x" * 500)
        self.clock.advance(TIMEOUT + 500 / RATE - 0.01)
        self.assertOpen(transport)
        self.clock.advance(0.01)
        self.assertRefused(transport, 408)

    def test_chunked_body_held_to_the_floor(self) -> None:
        """A chunked body of unknown length is held to the same floor."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
        channel.dataReceived(b"a\r\n0123456789\r\n")
        self.clock.advance(TIMEOUT + 16 / RATE)
        self.assertRefused(transport, 408)


class OversizeTests(ChannelHarness):
    """Over-long lines and header blocks are answered at once and not buffered."""

    def test_huge_header_line(self) -> None:
        """A header line past the limit gets 431 at once; what follows is discarded unread."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"X-Huge: ")
        channel.dataReceived(b"a" * (MAX_LINE_LENGTH - len(b"X-Huge: ")))
        self.assertOpen(transport)
        channel.dataReceived(b"a" * 64)
        body = self.assertRefused(transport, 431)
        self.assertIn(b"header line is over 16384 bytes", body)
        answered = transport.value()
        for _ in range(64):
            channel.dataReceived(b"a" * 65536)
        self.assertEqual(transport.value(), answered)
        self.assertEqual(channel.clearLineBuffer(), b"")

    def test_huge_request_line(self) -> None:
        """A request line past the limit gets 414."""
        channel, transport = self.connect()
        channel.dataReceived(b"POST /" + b"a" * (MAX_LINE_LENGTH + 10))
        self.assertRefused(transport, 414)

    def test_header_block_too_large(self) -> None:
        """Many short headers adding up past the block limit get 431."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD)
        line = b"X-Many: " + b"m" * 100 + b"\r\n"
        channel.dataReceived(line * (MAX_HEADER_BLOCK // 100))
        body = self.assertRefused(transport, 431)
        self.assertIn(b"headers are over", body)

    def test_bad_request_discards_the_rest(self) -> None:
        """A malformed header gets 400 once; a request after it is never processed."""
        channel, transport = self.connect()
        channel.dataReceived(HEAD + b"no colon here\r\n\r\n" + http_request(dump_call("GetVersion", ())))
        self.assertRefused(transport, 400)
