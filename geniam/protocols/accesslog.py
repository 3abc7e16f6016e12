# -*- test-case-name: tests.test_accesslog -*-
"""
An access log that costs little per request.

Twisted's L{twisted.web.http.HTTPFactory} writes one log event per request
(the Combined Log Format line), and every event goes through the log
observers and their formatting. L{AccessLog} collects the lines instead and
emits them together, one event per L{FLUSH_INTERVAL} while requests come in
(each line keeps its own time stamp), and at once when the site stops.
"""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

FLUSH_INTERVAL = 1.0
"""Seconds an access-log line may wait before it is written."""


class AccessLog:
    """
    Access-log lines, written in batches.

    @param clock: schedules the writes.
    @param interval: the longest a line waits.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float = FLUSH_INTERVAL) -> None:
        self._clock = clock
        self._interval = interval
        self._lines: list[str] = []
        self._pending: IDelayedCall | None = None

    def add(self, line: str) -> None:
        """Queue one line; it is written within the interval."""
        self._lines.append(line)
        if self._pending is None:
            self._pending = self._clock.callLater(self._interval, self.flush)

    def flush(self) -> None:
        """Write the queued lines now, as one log event."""
        if self._pending is not None and self._pending.active():
            self._pending.cancel()
        self._pending = None
        lines, self._lines = self._lines, []
        if lines:
            self.log.info("{access}", access="\n".join(lines), requests=len(lines))
