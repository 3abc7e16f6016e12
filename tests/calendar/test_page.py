"""
The calendar's web resources in memory: the page, the feeds' answers to
bad queries, and that no slice or user ever shows.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from geniam.calendar.resource import CalendarPage, IcsFeed, JsonFeed
from geniam.calendar.schedule import Block, BlockKind, IslandRow, IslandState, Schedule
from geniam.interfaces import IScheduleSource

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
H = 3600.0
A = "urn:publicid:IDN+lab:am1+authority+am"
B = "urn:publicid:IDN+lab:am2+authority+am"


@implementer(IScheduleSource)
class FixedSource:
    """A schedule source answering with one schedule, or failing."""

    def __init__(self, schedule: Schedule | None) -> None:
        self._schedule = schedule
        self.windows: list[tuple[float, float]] = []

    def schedule(self, start: float, end: float) -> Deferred[Schedule]:
        self.windows.append((start, end))
        if self._schedule is None:
            return fail(RuntimeError("database on fire at /var/lib/secret"))
        return succeed(self._schedule)


def federation() -> Schedule:
    one = IslandRow(
        A, "lab:am1", (Block(NOW - H, NOW + H, BlockKind.RUNNING), Block(NOW + 3 * H, NOW + 5 * H)), IslandState.IN_SLOT
    )
    two = IslandRow(B, "lab:am2", (Block(NOW + 2 * H, NOW + 4 * H, BlockKind.MAINTENANCE, "new switch"),))
    lost = IslandRow("urn:publicid:IDN+lab:am3+authority+am", "lab:am3", (), IslandState.UNKNOWN, reachable=False, reachability="did not answer within 30 s")
    return Schedule("Federation of lab:sm", NOW, (one, two, lost), federation=True)


class ResourceTests(SynchronousTestCase):
    """What the resources answer."""

    def get(self, resource_type: Any, args: dict[str, list[str]], schedule: Schedule | None = None) -> tuple[int, str, bytes]:
        clock = Clock()
        clock.advance(NOW)
        resource = resource_type(FixedSource(federation() if schedule is None else schedule), clock)
        request = DummyRequest([b""])
        request.args = {k.encode(): [v.encode() for v in vs] for k, vs in args.items()}
        result = resource.render(request)
        if result is not NOT_DONE_YET:
            request.write(result)
            request.finish()
        self.assertTrue(request.finished)
        content_type = request.responseHeaders.getRawHeaders(b"content-type", [b""])[0].decode()
        return request.responseCode or 200, content_type, b"".join(request.written)

    def test_source_is_an_interface(self) -> None:
        """The test source provides the interface the resources read."""
        verifyObject(IScheduleSource, FixedSource(None))

    def test_page_shows_rows_blocks_and_now(self) -> None:
        """The page has a row per island, each block placed, the now line, and the unreachable island marked."""
        code, content_type, body = self.get(CalendarPage, {})
        page = body.decode()
        self.assertEqual((code, content_type), (200, "text/html; charset=utf-8"))
        self.assertIn('http-equiv="refresh"', page)
        self.assertEqual(page.count('class="row"'), 3)
        self.assertIn('class="block running" style="left:29.1667%;width:8.3333%"', page)
        self.assertIn("Maintenance (new switch)", page)
        self.assertIn('class="nowline" style="left:33.3333%"', page)
        self.assertIn("unreachable: did not answer within 30 s", page)
        self.assertIn('<label for="duration">', page)
        self.assertNotIn("<script", page)

    def test_finder_all_islands_together(self) -> None:
        """The finder answers when every chosen island is free together, leaving out the unknown one."""
        code, _, body = self.get(CalendarPage, {"duration": ["1h"]})
        page = body.decode()
        self.assertEqual(code, 200)
        # Free together between am1's running slot and am2's maintenance: 09:00 to 10:00.
        self.assertIn(f'<li data-start="{int(NOW + H)}"><strong>Fri 15 Jan 2027 09:00 – 10:00</strong>', page)
        self.assertIn("Left out, its schedule is unknown: lab:am3", page)

    def test_finder_chosen_islands(self) -> None:
        """With islands chosen, only their blocks count: am2 alone is free from now."""
        _, _, body = self.get(CalendarPage, {"duration": ["1h"], "island": [B]})
        self.assertIn(f'data-start="{int(NOW)}"', body.decode())

    def test_bad_query_is_400_page(self) -> None:
        """A nonsense parameter gets a 400 page saying what was wrong."""
        code, content_type, body = self.get(CalendarPage, {"date": ["yesterday"]})
        self.assertEqual((code, content_type), (400, "text/html; charset=utf-8"))
        self.assertIn("date &#x27;yesterday&#x27; is not a date", body.decode().replace("'", "&#x27;"))
        self.assertNotIn(b"Traceback", body)

    def test_feeds_400_as_text(self) -> None:
        """The feeds answer bad queries with a plain-text 400, unknown islands included."""
        for resource, args in ((IcsFeed, {"tz": ["Nowhere/Land"]}), (JsonFeed, {"duration": ["2h"], "island": ["nope"]})):
            code, content_type, body = self.get(resource, args)
            self.assertEqual((code, content_type), (400, "text/plain; charset=utf-8"))
            self.assertTrue(body.strip())

    def test_source_failure_is_503(self) -> None:
        """A schedule that cannot be read gives a 503 without the failure's details; the failure is logged."""
        clock = Clock()
        request = DummyRequest([b""])
        self.assertEqual(CalendarPage(FixedSource(None), clock).render(request), NOT_DONE_YET)
        self.assertEqual(request.responseCode, 503)
        self.assertNotIn(b"/var/lib/secret", b"".join(request.written))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_json_feed(self) -> None:
        """The JSON feed holds every island and block, and the free slots when a duration is given."""
        code, content_type, body = self.get(JsonFeed, {"duration": ["1h"]})
        document = json.loads(body)
        self.assertEqual((code, content_type), (200, "application/json"))
        self.assertEqual([i["name"] for i in document["islands"]], ["lab:am1", "lab:am2", "lab:am3"])
        self.assertEqual(document["islands"][1]["blocks"][0]["reason"], "new switch")
        self.assertEqual(document["free"]["slots"][0]["start"], "2027-01-15T09:00:00Z")
        self.assertEqual(document["free"]["left_out"][0]["urn"], "urn:publicid:IDN+lab:am3+authority+am")

    def test_security_headers(self) -> None:
        """Pages are not cached or framed and run no script."""
        clock = Clock()
        request = DummyRequest([b""])
        CalendarPage(FixedSource(federation()), clock).render(request)
        policy = request.responseHeaders.getRawHeaders(b"content-security-policy")[0]
        self.assertIn(b"default-src 'none'", policy)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"cache-control"), [b"no-store"])
