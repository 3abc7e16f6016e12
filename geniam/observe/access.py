# -*- test-case-name: tests.loopback.test_observe -*-
"""
A web site whose access log is a function of the request, so that each
request can be logged as one event with named fields instead of Twisted's
preformatted text line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class AccessLogging:
    """
    A mix-in for L{twisted.web.server.Site}: when L{access_log} is set it is
    called for every request answered, instead of Twisted's text access log.
    """

    access_log: Callable[[Any], None] | None = None

    def log(self, request: Any) -> None:
        """Log an answered request to L{access_log}, or as Twisted does."""
        if self.access_log is not None:
            self.access_log(request)
        else:
            super().log(request)  # type: ignore[misc]
