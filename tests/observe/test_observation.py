"""
The access log event of one answered request: its text and its named fields.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from geniam.observe.logformat import event_as_json
from geniam.observe.metrics import ServiceMetrics
from geniam.observe.observation import ServiceObservation


class AccessEventTests(SynchronousTestCase):
    """An access event reads as its format says and keeps every field, whatever the request holds."""

    def test_braces_in_the_request_are_text(self) -> None:
        """A path and agent with format braces are logged literally, and the fields stay structured."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        request = DummyRequest([b""])
        request.method = b"POST"
        request.uri = b"/xmlrpc/{0}{peer}}"
        request.code = 200
        request.sentLength = 42
        request.requestHeaders.setRawHeaders(b"user-agent", [b"omni {x}"])
        ServiceObservation(Clock(), ServiceMetrics("am")).access(request)
        (event,) = [e for e in events if e.get("log_namespace") == "geniam.access"]
        self.assertEqual(formatEvent(event), f'{event["peer"]} "POST /xmlrpc/{{0}}{{peer}}}}" 200 42')
        record = json.loads(event_as_json(event))
        self.assertEqual(
            (record["http_method"], record["path"], record["status"], record["size"], record["user_agent"]),
            ("POST", "/xmlrpc/{0}{peer}}", 200, 42, "omni {x}"),
        )
        self.assertEqual(record["message"], formatEvent(event))
