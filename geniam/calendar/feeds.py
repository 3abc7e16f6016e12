# -*- test-case-name: tests.loopback.test_calendar,tests.calendar.test_page -*-
"""
The calendar's feeds: C{/calendar.ics} (RFC 5545, written by the
C{icalendar} library) for calendar applications to subscribe to, and
C{/schedule.json} with the same facts for scripts.

Both are anonymous exactly as the advertisement is: one event or entry
per block, saying only when and what kind (booked, running,
maintenance with its reason), and which island.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from icalendar import Calendar, Event

from geniam.calendar.schedule import Block, BlockKind, FreeSearch, IslandRow, Schedule
from geniam.timeutil import format_time, to_datetime

PRODUCT = "-//geniam//booking calendar//EN"
"""The iCalendar C{PRODID}."""

REFRESH = timedelta(minutes=5)
"""How often subscribers are asked to fetch the feed again."""

_SUMMARIES = {BlockKind.BOOKED: "booked", BlockKind.RUNNING: "booked (running now)", BlockKind.MAINTENANCE: "maintenance"}


def block_uid(row: IslandRow, block: Block) -> str:
    """
    A block's stable iCalendar C{UID}: from the island and the start (a
    renewal moves only the end, so the event stays the same), never from
    who booked it.
    """
    family = "maintenance" if block.kind is BlockKind.MAINTENANCE else "booking"
    digest = hashlib.sha256(f"{row.urn}|{family}|{block.start:.0f}".encode()).hexdigest()[:24]
    return f"{digest}@geniam"


def block_summary(row: IslandRow, block: Block) -> str:
    """An event's title: C{am1: booked}, C{am1: maintenance (new switch)}."""
    summary = f"{row.name}: {_SUMMARIES[block.kind]}"
    return f"{summary} ({block.reason})" if block.kind is BlockKind.MAINTENANCE and block.reason else summary


def ics_feed(schedule: Schedule) -> bytes:
    """The schedule as an iCalendar document, one C{VEVENT} per block (times in UTC)."""
    calendar = Calendar()
    calendar.add("prodid", PRODUCT)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", schedule.title)
    calendar.add("x-published-ttl", "PT5M")
    calendar.add("refresh-interval", REFRESH, parameters={"VALUE": "DURATION"})
    stamp = to_datetime(int(schedule.generated))
    for row in schedule.islands:
        for block in row.blocks:
            event = Event()
            event.add("uid", block_uid(row, block))
            event.add("dtstamp", stamp)
            event.add("dtstart", to_datetime(block.start))
            event.add("dtend", to_datetime(block.end))
            event.add("summary", block_summary(row, block))
            event.add("location", row.urn)
            event.add("categories", [block.kind.value])
            event.add("transp", "OPAQUE")
            event.add("status", "CONFIRMED")
            if block.reason:
                event.add("description", block.reason)
            calendar.add_component(event)
    return bytes(calendar.to_ical())


def block_json(block: Block) -> dict[str, Any]:
    """One block for the JSON feed."""
    entry: dict[str, Any] = {"start": format_time(block.start), "end": format_time(block.end), "kind": block.kind.value}
    if block.kind is BlockKind.MAINTENANCE:
        entry["reason"] = block.reason
    return entry


def island_json(row: IslandRow) -> dict[str, Any]:
    """One island for the JSON feed."""
    return {
        "urn": row.urn,
        "name": row.name,
        "reachable": row.reachable,
        "reachability": row.reachability,
        "state": row.state.value,
        "detail": row.detail,
        "gateway": row.gateway,
        "blocks": [block_json(block) for block in row.blocks],
    }


def search_json(search: FreeSearch) -> dict[str, Any]:
    """A free-slot answer for the JSON feed."""
    return {
        "duration": search.duration,
        "earliest": format_time(search.earliest),
        "islands": [row.urn for row in search.islands],
        "left_out": [{"urn": row.urn, "why": row.reachability} for row in search.left_out],
        "slots": [
            {
                "start": format_time(slot.start),
                "end": format_time(slot.end),
                "free_until": format_time(slot.free_until) if slot.free_until is not None else None,
            }
            for slot in search.slots
        ],
    }


def json_feed(schedule: Schedule, search: FreeSearch | None = None) -> bytes:
    """The schedule (and a free-slot answer, when asked) as JSON; times RFC 3339 UTC."""
    document: dict[str, Any] = {
        "title": schedule.title,
        "generated": format_time(schedule.generated),
        "federation": schedule.federation,
        "islands": [island_json(row) for row in schedule.islands],
    }
    if search is not None:
        document["free"] = search_json(search)
    return json.dumps(document, indent=2).encode("utf-8") + b"\n"
