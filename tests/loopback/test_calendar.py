"""
The booking calendar end to end: aggregates and a slice manager on
loopback with their status listeners, bookings made through the AM API,
the feeds read over HTTP (the iCalendar one parsed back with the
C{icalendar} library).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from icalendar import Calendar
from twisted.internet.error import ConnectionRefusedError

from geniam.cli.demo import book_samples
from geniam.timeutil import format_time, to_datetime
from tests.calendar_harness import CalendarHarness, tomorrow_at

H = 3600.0
SECRETS = (b"alice", b"exp1", b"127.0.0.9", b"+sliver+", b"example.org")


class AggregateCalendarTests(CalendarHarness):
    """An aggregate's calendar of its own island."""

    async def test_ics_feed_parsed_back(self) -> None:
        """The iCalendar feed holds one event per booking at its times, and loses it after Delete."""
        fed = await self.start()
        start = tomorrow_at(self.clock.seconds(), 10)
        urns = await self.book(start, start + 2 * H)
        code, headers, body = await self.fetch(fed.calendar_url("am1") + "calendar.ics")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], ["text/calendar; charset=utf-8"])
        calendar = Calendar.from_ical(body)
        events = list(calendar.walk("VEVENT"))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].decoded("dtstart"), to_datetime(start))
        self.assertEqual(events[0].decoded("dtend"), to_datetime(start + 2 * H))
        self.assertEqual(str(events[0]["summary"]), "geniam:demo:am1: booked")
        self.assertEqual(str(calendar["version"]), "2.0")
        await self.delete(urns)
        _, _, body = await self.fetch(fed.calendar_url("am1") + "calendar.ics")
        self.assertEqual(list(Calendar.from_ical(body).walk("VEVENT")), [])

    async def test_never_leaks_who_booked(self) -> None:
        """No page or feed names the slice, the user, the controller or the sliver."""
        fed = await self.start()
        now = self.clock.seconds()
        await self.book(now + H, now + 3 * H, controller="127.0.0.9:6633")
        shown = {
            "": f'data-start="{int(now + H)}"',
            "?view=week&duration=2h": f'data-start="{int(now + H)}"',
            "calendar.ics": "DTSTART:" + format_time(now + H).replace("-", "").replace(":", ""),
            "schedule.json?duration=1h": format_time(now + H),
        }
        for path, booking in shown.items():
            code, _, body = await self.fetch(fed.calendar_url("am1") + path)
            self.assertEqual(code, 200, path)
            self.assertIn(booking.encode(), body, path)
            for secret in SECRETS:
                self.assertNotIn(secret, body.lower(), f"{path} shows {secret!r}")

    async def test_state_and_link(self) -> None:
        """The JSON feed tells the island's state now and its gateway link."""
        fed = await self.start()
        now = self.clock.seconds()
        _, _, body = await self.fetch(fed.calendar_url("am1") + "schedule.json")
        island = json.loads(body)["islands"][0]
        self.assertEqual((island["state"], island["gateway"]), ("idle", "simulated in process"))
        await self.book(now, now + H)
        _, _, body = await self.fetch(fed.calendar_url("am1") + "schedule.json")
        island = json.loads(body)["islands"][0]
        self.assertEqual(island["state"], "in a slot")
        self.assertEqual(island["blocks"][0]["kind"], "running")

    async def test_listener_closes_with_the_aggregate(self) -> None:
        """Stopping the aggregate closes its status listener."""
        fed = await self.start()
        url = fed.calendar_url("am1")
        code, _, _ = await self.fetch(url)
        self.assertEqual(code, 200)
        await fed.aggregates["am1"].stopService()
        with self.assertRaises(ConnectionRefusedError):
            await self.fetch(url)

    async def test_bad_queries_over_http(self) -> None:
        """Nonsense parameters get a readable 400, never a traceback."""
        fed = await self.start()
        for path, words in (
            ("?view=month", b"view"),
            ("schedule.json?duration=1h&earliest=soon", b"not a time"),
            ("calendar.ics?date=1-1-1", b"not a date"),
            ("?duration=100000d", b"longer than"),
        ):
            code, _, body = await self.fetch(fed.calendar_url("am1") + path)
            self.assertEqual(code, 400, path)
            self.assertIn(words, body)
            self.assertNotIn(b"Traceback", body)


class FederationCalendarTests(CalendarHarness):
    """A slice manager's calendar of every island behind it."""

    async def test_rows_and_common_free_slot(self) -> None:
        """One row per island from the advertisements; the finder answers when both are free together."""
        fed = await self.start(("am1", "am2"), slice_manager="sm")
        start = tomorrow_at(self.clock.seconds(), 10)
        await self.book(start, start + 2 * H, "am1")
        await self.book(start + 2 * H, start + 4 * H, "am2")
        earliest = format_time(start)
        code, _, body = await self.fetch(fed.calendar_url("sm") + f"schedule.json?duration=2h&earliest={earliest}")
        self.assertEqual(code, 200, body)
        document = json.loads(body)
        self.assertTrue(document["federation"])
        rows = {row["name"]: row for row in document["islands"]}
        self.assertEqual(set(rows), {"geniam:demo:am1", "geniam:demo:am2"})
        self.assertTrue(all(row["reachable"] for row in rows.values()))
        self.assertEqual(rows["geniam:demo:am1"]["blocks"], [{"start": earliest, "end": format_time(start + 2 * H), "kind": "booked"}])
        self.assertEqual(document["free"]["slots"][0]["start"], format_time(start + 4 * H))
        only_one = "schedule.json?" + urlencode({"duration": "2h", "earliest": earliest, "island": fed.aggregates["am2"].urn})
        _, _, body = await self.fetch(fed.calendar_url("sm") + only_one)
        self.assertEqual(json.loads(body)["free"]["slots"][0]["start"], earliest)
        _, _, page = await self.fetch(fed.calendar_url("sm"))
        for secret in SECRETS:
            self.assertNotIn(secret, page.lower())

    async def test_demo_sample_bookings(self) -> None:
        """The sample bookings of C{geniam demo --serve} show on the federation's calendar: both islands, then one."""
        fed = await self.start(("am1", "am2"), slice_manager="sm")
        urns = [service.urn for service in fed.aggregates.values()]
        now = self.clock.seconds()
        lines = await book_samples(self.alice("sm"), fed.slice_urn("exp1"), now, urns)
        self.assertEqual([line.split()[0] for line in lines], ["booked", "booked"])
        _, _, body = await self.fetch(fed.calendar_url("sm") + "schedule.json")
        counts = {row["name"]: len(row["blocks"]) for row in json.loads(body)["islands"]}
        self.assertEqual(counts, {"geniam:demo:am1": 2, "geniam:demo:am2": 1})

    async def test_unreachable_aggregate(self) -> None:
        """An aggregate that does not answer is a row marked unreachable, left out of the finder."""
        fed = await self.start(("am1", "am2"), slice_manager="sm")
        await fed.aggregates["am2"].stopService()
        _, _, body = await self.fetch(fed.calendar_url("sm") + "schedule.json?duration=1h")
        document = json.loads(body)
        rows = {row["name"]: row for row in document["islands"]}
        self.assertTrue(rows["geniam:demo:am1"]["reachable"])
        self.assertFalse(rows["geniam:demo:am2"]["reachable"])
        self.assertTrue(rows["geniam:demo:am2"]["reachability"])
        self.assertEqual([o["urn"] for o in document["free"]["left_out"]], [fed.aggregates["am2"].urn])
        code, _, page = await self.fetch(fed.calendar_url("sm"))
        self.assertEqual(code, 200)
        self.assertIn(b"unreachable", page)
