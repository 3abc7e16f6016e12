"""
Tests for L{geniam.protocols.accesslog} and the access log of L{geniam.protocols.xmlrpc.GeniSite}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from geniam.protocols.accesslog import FLUSH_INTERVAL, AccessLog
from geniam.protocols.xmlrpc import GeniSite


class AccessLogTests(SynchronousTestCase):
    """Lines are written together, one event per interval, none lost."""

    def test_batched(self) -> None:
        """Lines wait for the interval and are then written as one event, in order."""
        clock = Clock()
        access = AccessLog(clock)
        with capturedLogs() as events:
            access.add("first")
            clock.advance(FLUSH_INTERVAL / 2)
            access.add("second")
            self.assertEqual(events, [])
            clock.advance(FLUSH_INTERVAL / 2)
            self.assertEqual([e["access"] for e in events], ["first\nsecond"])
            self.assertEqual(events[0]["requests"], 2)
            clock.advance(10 * FLUSH_INTERVAL)
            self.assertEqual(len(events), 1)
            self.assertEqual(clock.getDelayedCalls(), [])

    def test_site_writes_every_request_and_flushes_on_stop(self) -> None:
        """The site queues one Combined Log Format line per request and writes what is left when it stops."""
        clock = Clock()
        site = GeniSite(Resource(), reactor=clock)
        with capturedLogs() as events:
            site.startFactory()
            for path in (b"/a", b"/b"):
                request = DummyRequest([path])
                request.uri = path
                request.method = b"POST"
                request.clientproto = b"HTTP/1.1"
                request.code = 200
                request.sentLength = 10
                site.log(request)
            self.assertEqual([e for e in events if "access" in e], [])
            site.stopFactory()
        [written] = [e["access"].splitlines() for e in events if "access" in e]
        self.assertEqual(len(written), 2)
        self.assertIn('"POST /a HTTP/1.1"', written[0])
        self.assertIn('"POST /b HTTP/1.1"', written[1])
