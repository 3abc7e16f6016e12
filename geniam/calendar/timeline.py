# -*- test-case-name: tests.calendar.test_timeline -*-
"""
The calendar's views, in the viewer's time zone, and its query parameters.

A view is a day or a week of local time in an IANA zone (UTC unless the
C{tz} parameter names another). Its window runs from local midnight to
local midnight, so a daylight-saving day is 23 or 25 hours long and its
hour marks skip or repeat an hour, as a wall clock does. Positions on the
timeline are fractions of the window's real length.

The query parameters of every calendar URL (C{/}, C{/calendar.ics},
C{/schedule.json}) are read here, strictly: an unknown parameter, a
repeated one or a nonsense value raises L{QueryError} with a message fit
for the person who typed it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAY = 86400.0
HOUR = 3600.0

MAX_DURATION = 31 * DAY
"""The longest free slot one may look for."""

MAX_AHEAD = 366 * DAY
"""How far ahead an earliest start may lie."""

MAX_DATE_DISTANCE = 3660
"""How many days from today a shown date may lie."""

MAX_VALUE_LENGTH = 100
"""The longest value of one parameter."""

MAX_ISLANDS = 200
"""The most C{island} parameters one query may name."""

VIEWS = ("day", "week")

PARAMETERS = ("view", "date", "tz", "duration", "earliest", "island")
"""The parameters every calendar URL understands."""

_DURATION = re.compile(r"^(?:\d{1,6}(?:\.\d{1,3})?\s*[dhms]\s*)+$")
_DURATION_PART = re.compile(r"(\d{1,6}(?:\.\d{1,3})?)\s*([dhms])")
_UNITS = {"d": DAY, "h": HOUR, "m": 60.0, "s": 1.0}
_ZONE = re.compile(r"^[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:Z|[+-]\d{2}:\d{2})?$")


class QueryError(ValueError):
    """A query parameter that makes no sense; the message says why, for people."""


@dataclass(frozen=True)
class CalendarQuery:
    """
    What a calendar URL asks for.

    @ivar view: C{day} or C{week}.
    @ivar day: the local date shown (any day of the week shown).
    @ivar zone: the viewer's time zone; C{zone_name} its IANA name.
    @ivar duration: the free slot's length asked for, if any, in seconds.
    @ivar earliest: its earliest start, POSIX seconds, if given.
    @ivar islands: the islands named (by URN or name) for the free-slot search.
    @ivar given: the parameters as given, to carry over in links and forms.
    """

    view: str
    day: date
    zone: tzinfo
    zone_name: str
    duration: float | None = None
    earliest: float | None = None
    islands: tuple[str, ...] = ()
    given: tuple[tuple[str, str], ...] = ()

    def value(self, name: str) -> str:
        """The value given for C{name}, or C{""}."""
        return next((v for k, v in self.given if k == name), "")


@dataclass(frozen=True)
class Window:
    """The stretch of time a view shows: C{[start, end)}, and its local days."""

    start: float
    end: float
    days: tuple[date, ...]

    @property
    def length(self) -> float:
        """Its real length in seconds."""
        return self.end - self.start


@dataclass(frozen=True)
class Tick:
    """A mark on the timeline: where (percent of the window), what it says, and whether it starts a day."""

    position: float
    label: str
    day: bool = False


def parse_zone(text: str) -> tuple[tzinfo, str]:
    """
    An IANA time zone by name (C{Europe/Berlin}, C{UTC}).

    @raise QueryError: for a name that is not one.
    """
    name = text.strip()
    if not name or name.upper() == "UTC" or name == "Z":
        return timezone.utc, "UTC"
    if not _ZONE.match(name):
        raise QueryError(f"tz {text[:40]!r} is not a time zone name; use an IANA name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name), name
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise QueryError(f"tz {name!r} is not a known time zone; use an IANA name such as Europe/Berlin or UTC") from None


def parse_duration(text: str) -> float:
    """
    A duration such as C{2h}, C{90m}, C{1h30m} or C{1d}.

    @raise QueryError: for anything else, zero, or more than L{MAX_DURATION}.
    """
    value = text.strip().lower()
    if not _DURATION.match(value):
        raise QueryError(f"duration {text[:40]!r} is not a duration; write it as 2h, 90m or 1h30m")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in _DURATION_PART.findall(value))
    if seconds < 60:
        raise QueryError(f"duration {text!r} is shorter than a minute")
    if seconds > MAX_DURATION:
        raise QueryError(f"duration {text!r} is longer than {int(MAX_DURATION // DAY)} days")
    return seconds


def parse_date(text: str, today: date) -> date:
    """
    A local date C{YYYY-MM-DD} within L{MAX_DATE_DISTANCE} days of C{today}.

    @raise QueryError: for anything else.
    """
    value = text.strip()
    try:
        if not _DATE.match(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise QueryError(f"date {text[:40]!r} is not a date; write it as YYYY-MM-DD") from None
    if abs((day - today).days) > MAX_DATE_DISTANCE:
        raise QueryError(f"date {value} is too far from today; the calendar shows ten years either way")
    return day


def local_moment(day: date, clock: time, zone: tzinfo) -> float:
    """
    POSIX seconds of a local wall-clock time. A time that a daylight-saving
    change skips is read with the offset before the change; a repeated one
    is its first occurrence.
    """
    return datetime.combine(day, clock, tzinfo=zone).timestamp()


def parse_earliest(text: str, zone: tzinfo, now: float) -> float:
    """
    An earliest start: C{now}, a local time C{YYYY-MM-DDTHH:MM} in C{zone}
    (what a browser's date-time field sends), or an RFC 3339 time with a
    zone. A time in the past means now.

    @raise QueryError: for anything else, or a time more than L{MAX_AHEAD} ahead.
    """
    value = text.strip()
    if value.lower() == "now":
        return now
    try:
        if not _LOCAL_TIME.match(value):
            raise ValueError
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(
            f"earliest {text[:40]!r} is not a time; write it as YYYY-MM-DDTHH:MM (in the page's time zone)"
        ) from None
    if moment.tzinfo is None:
        seconds = local_moment(moment.date(), moment.time(), zone)
    else:
        seconds = moment.timestamp()
    if seconds > now + MAX_AHEAD:
        raise QueryError(f"earliest {value} is more than {int(MAX_AHEAD // DAY)} days ahead")
    return max(seconds, now)


def parse_query(arguments: Mapping[bytes | str, Sequence[bytes | str]], now: float) -> CalendarQuery:
    """
    Read a calendar URL's query parameters (as C{request.args} holds them).
    Empty values count as not given.

    @raise QueryError: for an unknown or repeated parameter or a nonsense value.
    """
    given: list[tuple[str, str]] = []
    for raw_name, raw_values in arguments.items():
        name = _text(raw_name, "a parameter name")
        if name not in PARAMETERS:
            raise QueryError(f"unknown parameter {name[:40]!r}; the calendar understands {', '.join(PARAMETERS)}")
        values = [_text(v, name) for v in raw_values]
        if name != "island" and len([v for v in values if v.strip()]) > 1:
            raise QueryError(f"parameter {name!r} is given more than once")
        for value in values:
            if len(value) > MAX_VALUE_LENGTH:
                raise QueryError(f"parameter {name!r} is too long")
            if value.strip():
                given.append((name, value.strip()))
    single = {name: value for name, value in given if name != "island"}
    islands = tuple(dict.fromkeys(value for name, value in given if name == "island"))
    if len(islands) > MAX_ISLANDS:
        raise QueryError(f"at most {MAX_ISLANDS} island parameters")
    zone, zone_name = parse_zone(single.get("tz", "UTC"))
    today = datetime.fromtimestamp(now, zone).date()
    view = single.get("view", "day")
    if view not in VIEWS:
        raise QueryError(f"view {view[:40]!r} is not one of: {', '.join(VIEWS)}")
    day = parse_date(single["date"], today) if "date" in single else today
    duration = parse_duration(single["duration"]) if "duration" in single else None
    earliest = parse_earliest(single["earliest"], zone, now) if "earliest" in single else None
    if earliest is not None and duration is None:
        raise QueryError("earliest needs a duration: how long a free slot do you need?")
    return CalendarQuery(view, day, zone, zone_name, duration, earliest, islands, tuple(given))


def _text(value: bytes | str, what: str) -> str:
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise QueryError(f"{what} is not UTF-8 text") from None


def window_of(query: CalendarQuery) -> Window:
    """The window a query's view shows: its local day, or its local week from Monday."""
    if query.view == "week":
        first = query.day - timedelta(days=query.day.weekday())
        days = tuple(first + timedelta(days=n) for n in range(7))
    else:
        days = (query.day,)
    start = local_moment(days[0], time(0), query.zone)
    end = local_moment(days[-1] + timedelta(days=1), time(0), query.zone)
    return Window(start, end, days)


def step_of(query: CalendarQuery, days: int) -> date:
    """The date C{days} views away (a week view moves by weeks)."""
    return query.day + timedelta(days=days * (7 if query.view == "week" else 1))


def ticks(window: Window, zone: tzinfo) -> list[Tick]:
    """
    The timeline's marks: every hour of a day view (a wall clock's hours,
    so a daylight-saving day skips or repeats one), every local midnight
    of a week view.
    """
    if len(window.days) > 1:
        marks = []
        for day in window.days:
            moment = local_moment(day, time(0), zone)
            marks.append(Tick(percent(window, moment), f"{day:%a} {day.day} {day:%b}", True))
        return marks
    marks = []
    moment = window.start
    while moment < window.end:
        local = datetime.fromtimestamp(moment, zone)
        marks.append(Tick(percent(window, moment), f"{local:%H:%M}", moment == window.start))
        moment = (datetime.fromtimestamp(moment, timezone.utc) + timedelta(hours=1)).timestamp()
    return marks


def percent(window: Window, moment: float) -> float:
    """Where C{moment} lies on the window, in percent, clipped to 0–100."""
    share = (moment - window.start) / window.length
    return round(100.0 * min(1.0, max(0.0, share)), 4)


def span(window: Window, start: float, end: float) -> tuple[float, float]:
    """C{(left, width)} in percent of the part of C{[start, end)} inside the window."""
    left = percent(window, start)
    return left, round(percent(window, end) - left, 4)


def format_local(seconds: float, zone: tzinfo, with_day: bool = True) -> str:
    """A moment in C{zone}: C{Tue 3 Mar 2026 14:00} (or C{14:00})."""
    local = datetime.fromtimestamp(seconds, zone)
    return f"{local:%a} {local.day} {local:%b %Y %H:%M}" if with_day else f"{local:%H:%M}"


def format_span(start: float, end: float, zone: tzinfo) -> str:
    """C{[start, end)} in C{zone}, the end's date left out when it is the start's."""
    same_day = datetime.fromtimestamp(start, zone).date() == datetime.fromtimestamp(end, zone).date()
    return f"{format_local(start, zone)} – {format_local(end, zone, with_day=not same_day)}"


def format_duration(seconds: float) -> str:
    """A duration in words: C{2 h 30 min}, C{3 d 4 h}."""
    minutes = int(round(seconds / 60))
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(p for p in parts if p) or "0 min"


def zone_label(seconds: float, zone: tzinfo) -> str:
    """The zone's abbreviation and offset at C{seconds}: C{CEST, UTC+02:00}."""
    local = datetime.fromtimestamp(seconds, zone)
    offset = local.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    name = local.tzname() or ""
    text = f"UTC{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    return text if name in ("UTC", text) else f"{name}, {text}"
