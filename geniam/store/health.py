# -*- test-case-name: tests.loopback.test_store_recovery -*-
"""
Whether a store's database answers, with one log line when it stops and one
when it is back, however many calls fail in between.
"""

from __future__ import annotations

from twisted.logger import Logger


class Availability:
    """
    Follows the outcomes of a store's operations: the first failure of the
    database after a success logs one error, the first success after a
    failure logs one recovery line.

    @ivar available: False from a failure of the database until the next success.
    @ivar reason: why the database failed last, while it is unavailable.
    """

    log = Logger()

    def __init__(self, name: str) -> None:
        """
        @param name: what the log lines call the database (a file, or "the PostgreSQL database").
        """
        self.name = name
        self.available = True
        self.reason = ""
        self._failures = 0
        self._writes_failed = False

    def failed(self, reason: str, write: bool = False) -> None:
        """An operation (a C{write}, or a read) failed because of the database (a L{geniam.store.errors.StoreError})."""
        self._failures += 1
        if self.available:
            self.available = False
            self.reason = reason
            self._writes_failed = write
            self.log.error("the booking database ({name}) is unavailable: {reason}; calls answer DBERROR until it is back",
                           name=self.name, reason=reason)

    def succeeded(self, write: bool = False) -> None:
        """
        An operation (a C{write}, or a read) succeeded. After a failed write
        only a write ends the outage: a file that cannot be written may
        still be read.
        """
        if not self.available and (write or not self._writes_failed):
            self.log.info("the booking database ({name}) is available again ({failures} calls failed meanwhile)",
                          name=self.name, failures=self._failures)
            self.available = True
            self.reason = ""
            self._failures = 0
            self._writes_failed = False
