# -*- test-case-name: tests.cli.test_schedule -*-
"""
C{geniam free}: the earliest slots during which islands are all free together.

::

  geniam free URL [URL ...] --duration 2h [--aggregate URN_OR_NAME ...]
      [--earliest TIME] [--count 5] --certificate CERT --private-key KEY
      --trust-roots DIR --credential USER-CREDENTIAL [--tz ZONE]

The schedules are read as C{geniam schedule} reads them (ListResources
with the user's own certificate and user credential). Without
C{--aggregate} every island found counts; each C{--aggregate} names one
by URN or name (its authority). Islands whose schedule could not be read
are left out and named. TIME is RFC 3339, C{now} or C{now+1h30m}. The
exit status is 0 when a slot was found over every island asked for, 1
otherwise, 2 for usage errors.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from geniam.calendar.schedule import Schedule, find_free
from geniam.calendar.terminal import render_free
from geniam.calendar.timeline import MAX_AHEAD, QueryError, parse_duration
from geniam.cli.rspec import parse_when
from geniam.cli.schedule import ScheduleReading, read_rows, run_reading


class Options(ScheduleReading):
    """Flags of C{geniam free}."""

    synopsis = "geniam free URL [URL ...] --duration 2h [options]"
    optParameters = [
        ["duration", None, None, "How long a slot you need (2h, 90m, 1h30m)."],
        ["earliest", None, "now", "The earliest start: RFC 3339, now or now+1h30m."],
        ["count", None, 5, "How many slots to list (1-50).", int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["aggregate"] = []

    def opt_aggregate(self, value: str) -> None:
        """An island that must be free, by aggregate URN or name (repeatable; default: every island found)."""
        self["aggregate"].append(value)

    def postOptions(self) -> None:
        """Check the duration and the count too."""
        super().postOptions()
        if not self["duration"]:
            raise usage.UsageError("--duration is required")
        try:
            self["seconds"] = parse_duration(self["duration"])
        except QueryError as e:
            raise usage.UsageError(str(e)) from None
        if not 1 <= self["count"] <= 50:
            raise usage.UsageError("--count must be between 1 and 50")


def main(argv: Sequence[str]) -> int:
    """Entry point of C{geniam free}."""
    options = Options()

    async def work(reactor: Any, now: float) -> int:
        earliest = max(now, parse_when(options["earliest"], now))
        rows = await read_rows(reactor, options, now)
        chosen, unknown = Schedule("", now, tuple(rows)).select(options["aggregate"])
        if unknown:
            found = ", ".join(r.name for r in rows)
            print(f"geniam free: no island is called {', '.join(unknown)}; found {found}", file=sys.stderr)
            return 2
        search = find_free(chosen, options["seconds"], earliest, options["count"], earliest + MAX_AHEAD)
        print(render_free(search, options["zone"]))
        return 0 if search.slots and not search.left_out else 1

    return run_reading("geniam free", options, argv, work)
