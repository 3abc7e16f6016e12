# -*- test-case-name: tests.calendar.test_page -*-
"""
The calendar's web resources: the page at C{/}, C{/calendar.ics} and
C{/schedule.json}, all reading one L{IScheduleSource}.

Bad query parameters get a 400 with a readable message (an HTML page for
C{/}, plain text for the feeds), never a traceback; a schedule that
cannot be read gets a 503 saying so, and the failure is logged.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from geniam.calendar.feeds import ics_feed, json_feed
from geniam.calendar.page import PageFacts, render_page, render_problem
from geniam.calendar.schedule import FreeSearch, Schedule, find_free
from geniam.calendar.timeline import DAY, MAX_AHEAD, MAX_DURATION, CalendarQuery, QueryError, parse_query, window_of
from geniam.interfaces import IScheduleSource

FREE_SLOTS = 5
"""How many free slots the finder lists."""

SECURITY_HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"referrer-policy": b"no-referrer",
    b"content-security-policy": (
        b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; "
        b"base-uri 'none'; frame-ancestors 'none'"
    ),
}

HTML = b"text/html; charset=utf-8"
TEXT = b"text/plain; charset=utf-8"
log = Logger()


def search_for(schedule: Schedule, query: CalendarQuery, now: float) -> tuple[FreeSearch | None, tuple[str, ...]]:
    """The free-slot answer a query asks for (none without a duration), and island names matching none."""
    if query.duration is None:
        return None, ()
    chosen, unknown = schedule.select(query.islands)
    earliest = query.earliest if query.earliest is not None else now
    return find_free(chosen, query.duration, earliest, FREE_SLOTS, horizon=earliest + MAX_AHEAD), tuple(unknown)


class _CalendarLeaf(Resource):
    """A calendar URL: parse the query, read the schedule, answer; errors become 400 or 503."""

    isLeaf = True
    content_type = HTML

    def __init__(self, source: IScheduleSource, clock: IReactorTime) -> None:
        super().__init__()
        self.source = source
        self.clock = clock

    def render_HEAD(self, request: Request) -> Any:
        """Answer HEAD as GET (Twisted drops the body)."""
        return self.render_GET(request)

    def render_GET(self, request: Request) -> Any:
        """Answer from the schedule, or with a readable 400 for a bad query."""
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        now = self.clock.seconds()
        try:
            query = parse_query(request.args or {}, now)
        except QueryError as e:
            return self._refuse(request, 400, str(e))
        finished: list[bool] = []
        request.notifyFinish().addBoth(lambda _: finished.append(True))
        d = Deferred.fromCoroutine(self._answer(query, now))

        def write(body: bytes) -> None:
            if not finished:
                request.setHeader(b"content-type", self.content_type)
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            if failure.check(QueryError):
                body = self._refuse(request, 400, str(failure.value))
            else:
                log.failure("the calendar could not answer", failure)
                body = self._refuse(request, 503, "The schedule cannot be read just now; try again shortly.")
            if not finished:
                request.write(body)
                request.finish()

        def last_resort(failure: Any) -> None:
            log.failure("the calendar could not even report a failure", failure)
            if not finished:
                request.setResponseCode(500)
                request.finish()

        d.addCallbacks(write, failed).addErrback(last_resort)
        return NOT_DONE_YET

    def _refuse(self, request: Request, code: int, message: str) -> bytes:
        request.setResponseCode(code)
        if self.content_type == HTML:
            request.setHeader(b"content-type", HTML)
            return render_problem(message)
        request.setHeader(b"content-type", TEXT)
        return message.encode("utf-8") + b"\n"

    async def _answer(self, query: CalendarQuery, now: float) -> bytes:
        raise NotImplementedError

    async def _read(self, start: float, end: float) -> Schedule:
        schedule: Schedule = await self.source.schedule(start, end)
        return schedule


class CalendarPage(_CalendarLeaf):
    """C{/}: the calendar page."""

    async def _answer(self, query: CalendarQuery, now: float) -> bytes:
        window = window_of(query)
        earliest = query.earliest if query.earliest is not None else now
        reach = earliest + MAX_AHEAD + MAX_DURATION if query.duration is not None else window.end
        schedule = await self._read(min(window.start, now), max(window.end, reach))
        search, unknown = search_for(schedule, query, now)
        return render_page(PageFacts(schedule, query, window, now, search, unknown))


class IcsFeed(_CalendarLeaf):
    """C{/calendar.ics}: every block from a day ago to a year ahead, as iCalendar."""

    content_type = b"text/calendar; charset=utf-8"

    async def _answer(self, query: CalendarQuery, now: float) -> bytes:
        return ics_feed(await self._read(now - DAY, now + MAX_AHEAD))


class JsonFeed(_CalendarLeaf):
    """C{/schedule.json}: the same as JSON, with a free-slot answer when C{duration} is given."""

    content_type = b"application/json"

    async def _answer(self, query: CalendarQuery, now: float) -> bytes:
        earliest = query.earliest if query.earliest is not None else now
        schedule = await self._read(now - DAY, max(now, earliest) + MAX_AHEAD + MAX_DURATION)
        search, unknown = search_for(schedule, query, now)
        if unknown:
            raise QueryError(f"no island is called {', '.join(unknown)}")
        return json_feed(schedule, search)


def install_calendar(root: Resource, source: IScheduleSource, clock: IReactorTime) -> None:
    """Put the calendar's three resources on a status listener's root: C{/}, C{/calendar.ics}, C{/schedule.json}."""
    root.putChild(b"", CalendarPage(source, clock))
    root.putChild(b"calendar.ics", IcsFeed(source, clock))
    root.putChild(b"schedule.json", JsonFeed(source, clock))

