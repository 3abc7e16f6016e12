# -*- test-case-name: tests.cli.test_schedule -*-
"""
C{geniam schedule}: an aggregate's or a whole federation's schedule as a
terminal timeline.

::

  geniam schedule URL [URL ...] --certificate CERT --private-key KEY
      --trust-roots DIR --credential USER-CREDENTIAL [--hours 24] [--tz ZONE]

Each URL (an aggregate or a slice manager) is asked for its advertisement
with ListResources, with the user's own certificate and user credential:
nothing beyond what listing resources needs. Every island's
C{<island:schedule>} becomes a line; an aggregate that a slice manager
could not reach, or a URL that cannot be reached, is a line marked
unknown. The exit status is 0 when every schedule was read, 1 when some
could not be, 2 for usage errors.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage

from geniam.calendar.advertised import rows_from_advertisement, schedule_error, unreachable_row
from geniam.calendar.schedule import IslandRow
from geniam.calendar.terminal import render_timeline
from geniam.calendar.timeline import QueryError, parse_zone
from geniam.cli.options import InterspersedOptions
from geniam.client import AMClient, value_of
from geniam.errors import GeniCode, GeniError
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity

IDENTITY_PARAMETERS: list[list[Any]] = [
    ["certificate", None, None, "Your certificate (PEM)."],
    ["private-key", None, None, "Your private key (PEM)."],
    ["trust-roots", None, None, "Folder of root certificates the servers' certificates must chain to."],
    ["credential", None, None, "Your user credential file (what ListResources needs)."],
    ["tz", None, "UTC", "Show times in this IANA time zone (e.g. Europe/Berlin)."],
    ["timeout", None, 60.0, "Seconds to wait for each answer.", float],
]
"""The flags C{geniam schedule} and C{geniam free} share."""


class ScheduleReading(InterspersedOptions):
    """Flags that say how to read schedules: who you are, and the URLs."""

    optParameters = IDENTITY_PARAMETERS

    def parseArgs(self, *urls: str) -> None:  # type: ignore[override]
        """Take the URLs of aggregates or slice managers."""
        if not urls:
            raise usage.UsageError("give at least one aggregate or slice manager URL")
        for url in urls:
            if not url.startswith("https://"):
                raise usage.UsageError(f"{url!r} is not an https:// URL")
        self["urls"] = list(urls)

    def postOptions(self) -> None:
        """Check the identity, the credential and the zone."""
        for name in ("certificate", "private-key", "trust-roots", "credential"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        try:
            self["zone"] = parse_zone(self["tz"])[0]
        except QueryError as e:
            raise usage.UsageError(str(e)) from None
        try:
            self["credential-text"] = Path(self["credential"]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise usage.UsageError(f"--credential {self['credential']}: {getattr(e, 'strerror', None) or e}") from None


class Options(ScheduleReading):
    """Flags of C{geniam schedule}."""

    synopsis = "geniam schedule URL [URL ...] [options]"
    optParameters = [["hours", None, 24.0, "How many hours from now to show (at most 744).", float]]

    def postOptions(self) -> None:
        """Check the span too."""
        super().postOptions()
        if not 1 <= self["hours"] <= 744:
            raise usage.UsageError("--hours must be between 1 and 744")


async def read_rows(reactor: Any, options: ScheduleReading, now: float) -> list[IslandRow]:
    """Ask every URL for its advertisement; one row per island, unreachable ones marked."""
    identity = Identity.from_files(options["certificate"], options["private-key"])
    roots = TrustRoots.from_directory(options["trust-roots"])
    rows: list[IslandRow] = []
    for url in options["urls"]:
        client = AMClient(reactor, url, identity, roots, [options["credential-text"]], timeout=options["timeout"])
        try:
            rspec = value_of(await client.list_resources())
            if not isinstance(rspec, str):
                raise GeniError(GeniCode.ERROR, "the advertisement is not a document")
            rows.extend(rows_from_advertisement(rspec, now))
        except GeniError as e:
            rows.append(unreachable_row(url, schedule_error(e)))
        finally:
            await client.close()
    return rows


def run_async(work: Any) -> int:
    """Run C{work(reactor)} on the reactor and return the exit status it gives."""
    status: list[int] = []

    async def go(reactor: Any) -> None:
        status.append(await work(reactor))

    try:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit:
        pass
    return status[0] if status else 2


def parse(program: str, options: usage.Options, argv: Sequence[str]) -> bool:
    """Parse C{argv}; print a usage error and return False when it is wrong."""
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        print(f"{program}: {e}\n\n{options}", file=sys.stderr)
        return False
    return True


def run_reading(
    program: str, options: ScheduleReading, argv: Sequence[str], work: Callable[[Any, float], Awaitable[int]]
) -> int:
    """
    Parse C{argv}, then run C{work(reactor, now)} on the reactor; usage
    errors and unreadable files are printed after C{program} and give 2.
    """
    if not parse(program, options, argv):
        return 2

    async def guarded(reactor: Any) -> int:
        try:
            return await work(reactor, reactor.seconds())
        except (OSError, ValueError, GeniError, usage.UsageError) as e:
            print(f"{program}: {getattr(e, 'output', None) or e}", file=sys.stderr)
            return 2

    return run_async(guarded)


def main(argv: Sequence[str]) -> int:
    """Entry point of C{geniam schedule}."""
    options = Options()

    async def work(reactor: Any, now: float) -> int:
        rows = await read_rows(reactor, options, now)
        start = now - now % 3600
        zone = options["zone"]
        print(render_timeline(rows, start, start + options["hours"] * 3600, zone))
        print(f"\nRead {datetime.fromtimestamp(now, timezone.utc):%Y-%m-%d %H:%M} UTC.")
        return 0 if all(row.reachable for row in rows) else 1

    return run_reading("geniam schedule", options, argv, work)
