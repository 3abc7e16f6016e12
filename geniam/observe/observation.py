# -*- test-case-name: tests.loopback.test_observe -*-
"""
What a daemon records of every request: one log event per AM API call
(C{geniam.calls}), one access log event per HTTP request
(C{geniam.access}), and the call metrics.

Both events carry the same named fields for a call (L{call_fields}):
C{method}, C{caller_urn}, C{slice_urn}, C{sliver_urns}, C{geni_code},
C{geni_code_name}, C{duration}, C{peer}; the access event adds
C{http_method}, C{path}, C{status}, C{size} and C{user_agent}. With
C{--log-format json} each event is one JSON object on one line
(L{geniam.observe.logformat}).
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from geniam.observe.calls import CallFacts, ICallObserver, call_fields
from geniam.observe.metrics import ServiceMetrics
from geniam.protocols.httpchannel import peer_name

CALL_FORMAT = "{method} from {caller_urn} ({peer}): {geni_code_name} in {duration:.3f} s"
ACCESS_FORMAT = '{peer} "{http_method} {path}" {status} {size}'

calls_log = Logger(namespace="geniam.calls")
access_log_events = Logger(namespace="geniam.access")


@implementer(ICallObserver)
class ServiceObservation:
    """
    Logs and counts the calls and requests of one daemon's listeners.

    @ivar metrics: where the calls are counted.
    """

    def __init__(self, clock: IReactorTime, metrics: ServiceMetrics) -> None:
        self._clock = clock
        self.metrics = metrics
        self._calls: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()

    def seconds(self) -> float:
        """The clock calls are timed with."""
        return self._clock.seconds()

    def called(self, request: Any, facts: CallFacts) -> None:
        """Log and count an answered call; keep its fields for the request's access line."""
        fields = call_fields(facts, self.seconds())
        self.metrics.call_answered(fields["method"], fields["geni_code_name"], fields["duration"])
        calls_log.info(_rendered(CALL_FORMAT, fields), **fields)
        self._calls[request] = fields

    def access(self, request: Any) -> None:
        """Log one answered HTTP request (with its call's fields if it carried a call)."""
        fields = self._calls.pop(request, None) or {"peer": peer_name(request.getClientAddress())}
        agent = request.getHeader(b"user-agent")
        event = dict(
            fields,
            http_method=_text(request.method),
            path=_text(request.uri)[:512],
            status=int(request.code),
            size=int(request.sentLength),
            user_agent=_text(agent)[:256] if agent else "",
        )
        access_log_events.info(_rendered(ACCESS_FORMAT, event), **event)


def _rendered(format: str, fields: dict[str, Any]) -> str:
    """
    The message of C{format} with C{fields}, as a format that is all
    literal text: the logger then formats the event's text without its
    (slow) general formatter, while the fields stay in the event.
    """
    return format.format(**fields).replace("{", "{{").replace("}", "}}")


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
