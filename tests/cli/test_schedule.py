"""
C{geniam schedule} and C{geniam free}: the terminal timeline, and both
commands in a child process against aggregates and a slice manager on
loopback, reading only what ListResources advertises.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import SynchronousTestCase

from geniam.calendar.schedule import Block, BlockKind, FreeSearch, FreeSlot, IslandRow, IslandState
from geniam.calendar.terminal import render_free, render_timeline
from geniam.cli.free import Options as FreeOptions
from geniam.timeutil import format_time, parse_time
from tests.calendar_harness import CalendarHarness, tomorrow_at
from tests.fixturepaths import REPO_ROOT

T0 = parse_time("2026-06-01T00:00:00Z")
H = 3600.0
A = "urn:publicid:IDN+lab:am1+authority+am"


class TimelineTextTests(SynchronousTestCase):
    """The timeline as text."""

    def test_bars_in_the_viewers_zone(self) -> None:
        """Each character is one stretch; blocks mark theirs; the scale and the list speak the zone's time."""
        row = IslandRow(A, "lab:am1", (Block(T0 + 2 * H, T0 + 4 * H, BlockKind.RUNNING), Block(T0 + 6 * H, T0 + 7 * H)))
        lost = IslandRow("urn:publicid:IDN+lab:am2+authority+am", "lab:am2", (), IslandState.UNKNOWN, reachable=False, reachability="timeout")
        text = render_timeline([row, lost], T0, T0 + 12 * H, ZoneInfo("Europe/Berlin"), width=12)
        lines = text.splitlines()
        self.assertEqual(lines[2][22:], "..>>..#.....")
        self.assertEqual(lines[3][22:], "?" * 12)
        self.assertIn("02h", lines[0])
        self.assertIn("Mon 1 Jun 2026 04:00 – 06:00  running", text)
        self.assertIn("lab:am2: unreachable (timeout)", text)

    def test_free_answer(self) -> None:
        """The free-slot answer lists slots and what was left out."""
        lost = IslandRow("urn:publicid:IDN+lab:am2+authority+am", "lab:am2", reachable=False, reachability="timeout")
        search = FreeSearch(2 * H, T0, (IslandRow(A, "lab:am1"),), (lost,), (FreeSlot(T0, T0 + 2 * H, T0 + 5 * H),))
        text = render_free(search, ZoneInfo("UTC"))
        self.assertIn("Mon 1 Jun 2026 00:00 – 02:00  (free until Mon 1 Jun 2026 05:00)", text)
        self.assertIn("Left out, its schedule is unknown: lab:am2 (timeout)", text)

    def test_usage(self) -> None:
        """A duration is required and must make sense; the identity is required."""
        from twisted.python.usage import UsageError

        for argv in (["https://x/"], ["https://x/", "--duration", "soon"], ["http://x/", "--duration", "1h"]):
            self.assertRaises(UsageError, FreeOptions().parseOptions, argv)


class CommandTests(CalendarHarness):
    """Both commands against a running federation, as alice with her user credential."""

    async def test_schedule_and_free(self) -> None:
        """The schedule shows a booking on its island; free finds when both islands are free together."""
        fed = await self.start(("am1", "am2"), slice_manager="sm")
        start = tomorrow_at(self.clock.seconds(), 10, ZoneInfo("UTC"))
        await self.book(start, start + 2 * H, "am1")
        await self.book(start + 2 * H, start + 3 * H, "am2")
        folder = Path(self.mktemp())
        folder.mkdir()
        usercred = folder / "alice-usercred.xml"
        usercred.write_text(fed.user_credential("alice"))
        domain = fed.domain
        base = [
            "--certificate", str(domain.cert_path("users", "alice")),
            "--private-key", str(domain.key_path("users", "alice")),
            "--trust-roots", str(domain.roots_dir),
            "--credential", str(usercred),
        ]
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

        async def geniam(*args: str) -> tuple[str, str, int]:
            out, err, code = await getProcessOutputAndValue(sys.executable, ["-m", "geniam", *args], env=env)
            return out.decode(), err.decode(), code

        out, err, code = await geniam("schedule", fed.url("sm"), "--hours", "48", *base)
        self.assertEqual(code, 0, err)
        self.assertIn("geniam:demo:am1", out)
        self.assertIn("10:00 – 12:00  booked", out)
        self.assertNotIn("alice", out)
        out, err, code = await geniam("free", fed.url("sm"), "--duration", "2h", "--earliest", format_time(start), *base)
        self.assertEqual(code, 0, err)
        self.assertIn("13:00 – ", out.splitlines()[1])
        out, err, code = await geniam("free", fed.url("am2"), "--duration", "2h", "--earliest", format_time(start), "--aggregate", "geniam:demo:am2", *base)
        self.assertEqual(code, 0, err)
        self.assertIn("10:00 – 12:00", out.splitlines()[1])
        out, err, code = await geniam("free", fed.url("am2"), "--duration", "2h", "--aggregate", "nope", *base)
        self.assertEqual(code, 2)
        self.assertIn("no island is called nope", err)
