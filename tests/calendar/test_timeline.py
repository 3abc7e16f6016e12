"""
The calendar's views in the viewer's time zone, daylight-saving days,
and the strict reading of query parameters.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

from twisted.trial.unittest import SynchronousTestCase

from geniam.calendar.timeline import (
    QueryError,
    format_span,
    parse_duration,
    parse_query,
    percent,
    span,
    ticks,
    window_of,
    zone_label,
)

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 3, 20, 12, 0, tzinfo=timezone.utc).timestamp()


def query(**params: str) -> dict[bytes, list[bytes]]:
    return {k.encode(): [v.encode()] for k, v in params.items()}


class ZoneTests(SynchronousTestCase):
    """Times are shown in the zone the viewer asks for."""

    def test_default_utc(self) -> None:
        """Without C{tz} the page speaks UTC."""
        q = parse_query({}, NOW)
        self.assertEqual(q.zone_name, "UTC")
        self.assertEqual(window_of(q).start, datetime(2026, 3, 20, tzinfo=timezone.utc).timestamp())

    def test_zone_moves_the_window_and_the_labels(self) -> None:
        """A Berlin day starts at 23:00 UTC the day before in winter; a slot reads in Berlin time."""
        q = parse_query(query(tz="Europe/Berlin", date="2026-03-20"), NOW)
        window = window_of(q)
        self.assertEqual(window.start, datetime(2026, 3, 19, 23, 0, tzinfo=timezone.utc).timestamp())
        slot = datetime(2026, 3, 20, 9, 0, tzinfo=timezone.utc).timestamp()
        self.assertEqual(format_span(slot, slot + 7200, BERLIN), "Fri 20 Mar 2026 10:00 – 12:00")
        self.assertEqual(zone_label(slot, BERLIN), "CET, UTC+01:00")
        self.assertEqual(span(window, slot, slot + 7200), (41.6667, 8.3333))

    def test_bad_zones(self) -> None:
        """Unknown zones and path tricks are refused with a readable message."""
        for bad in ("Mars/Olympus", "../../etc/passwd", "/etc/localtime", "Europe/", "x" * 200):
            with self.assertRaises(QueryError) as cm:
                parse_query(query(tz=bad), NOW)
            self.assertIn("tz", str(cm.exception))


class DaylightSavingTests(SynchronousTestCase):
    """Days on which the clocks change are 23 or 25 hours long."""

    def test_spring_forward(self) -> None:
        """Berlin's 29 March 2026 has 23 hours and no 02:00."""
        window = window_of(parse_query(query(tz="Europe/Berlin", date="2026-03-29"), NOW))
        self.assertEqual(window.length, 23 * 3600)
        labels = [t.label for t in ticks(window, BERLIN)]
        self.assertEqual(len(labels), 23)
        self.assertEqual(labels[:4], ["00:00", "01:00", "03:00", "04:00"])
        noon = datetime(2026, 3, 29, 12, 0, tzinfo=BERLIN).timestamp()
        self.assertAlmostEqual(percent(window, noon), 100 * 11 / 23, places=3)

    def test_fall_back(self) -> None:
        """Berlin's 25 October 2026 has 25 hours and 02:00 twice."""
        window = window_of(parse_query(query(tz="Europe/Berlin", date="2026-10-25"), NOW))
        self.assertEqual(window.length, 25 * 3600)
        labels = [t.label for t in ticks(window, BERLIN)]
        self.assertEqual(labels[:5], ["00:00", "01:00", "02:00", "02:00", "03:00"])

    def test_week_across_a_change(self) -> None:
        """A week holding a change has 7 × 24 − 1 hours and starts on Monday."""
        window = window_of(parse_query(query(tz="Europe/Berlin", date="2026-03-26", view="week"), NOW))
        self.assertEqual(window.days[0], date(2026, 3, 23))
        self.assertEqual(window.length, (7 * 24 - 1) * 3600)
        self.assertEqual([t.label for t in ticks(window, BERLIN)][0], "Mon 23 Mar")

    def test_earliest_in_a_skipped_hour(self) -> None:
        """A local time the change skips is read with the offset before it (02:30 CET is 01:30 UTC)."""
        q = parse_query(query(tz="Europe/Berlin", duration="1h", earliest="2026-03-29T02:30"), NOW)
        self.assertEqual(q.earliest, datetime(2026, 3, 29, 1, 30, tzinfo=timezone.utc).timestamp())


class QueryTests(SynchronousTestCase):
    """Nonsense parameters are refused with messages people can act on."""

    def test_durations(self) -> None:
        """Durations read as units, compound or not."""
        self.assertEqual(parse_duration("2h"), 7200)
        self.assertEqual(parse_duration("1h30m"), 5400)
        self.assertEqual(parse_duration("1.5 h"), 5400)
        self.assertEqual(parse_duration("1d"), 86400)

    def test_refusals(self) -> None:
        """Each bad value says what was wrong, naming no Python internals."""
        cases = {
            (("duration", "abc"),): "duration",
            (("duration", "0m"),): "shorter than a minute",
            (("duration", "9999d"),): "longer than 31 days",
            (("date", "2026-02-30"),): "not a date",
            (("date", "99999-01-01"),): "not a date",
            (("date", "2500-01-01"),): "too far",
            (("view", "month"),): "view",
            (("earliest", "2026-03-21T10:00"),): "needs a duration",
            (("duration", "1h"), ("earliest", "tomorrow")): "not a time",
            (("duration", "1h"), ("earliest", "2030-01-01T00:00")): "days ahead",
            (("bogus", "1"),): "unknown parameter",
        }
        for pairs, expected in cases.items():
            with self.assertRaises(QueryError) as cm:
                parse_query({k.encode(): [v.encode()] for k, v in pairs}, NOW)
            self.assertIn(expected, str(cm.exception))
            for internal in ("Traceback", "ValueError", "float(", "invalid literal"):
                self.assertNotIn(internal, str(cm.exception))

    def test_repeated_and_binary(self) -> None:
        """A repeated single-valued parameter or non-UTF-8 bytes are refused."""
        self.assertRaises(QueryError, parse_query, {b"view": [b"day", b"week"]}, NOW)
        self.assertRaises(QueryError, parse_query, {b"tz": [b"\xff\xfe"]}, NOW)

    def test_empty_values_are_absent(self) -> None:
        """An empty field of a submitted form counts as not given."""
        q = parse_query({b"duration": [b"2h"], b"earliest": [b""], b"island": [b"a", b"a", b"b"]}, NOW)
        self.assertIsNone(q.earliest)
        self.assertEqual(q.islands, ("a", "b"))

    def test_earliest_in_the_past_means_now(self) -> None:
        """Nobody can book the past: an earlier start is now."""
        q = parse_query(query(duration="1h", earliest="2020-01-01T00:00Z"), NOW)
        self.assertEqual(q.earliest, NOW)
