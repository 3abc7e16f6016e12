# -*- test-case-name: tests.calendar.test_page -*-
"""
The calendar page, rendered on the server with C{twisted.web.template}.

No JavaScript: navigation and the free-slot finder are links and GET
forms, and the page reloads itself every minute (C{meta refresh}). The
timeline is positioned with percentages, so it fits a phone and a wall
screen alike; every block it draws is also a row of the table below it,
for screen readers and for copying. Colours keep a contrast of at least
4.5:1 and every control shows where the keyboard focus is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from twisted.web.template import Tag, flattenString, tags

from geniam.calendar.schedule import Block, BlockKind, FreeSearch, IslandRow, IslandState, Schedule
from geniam.calendar.timeline import (
    CalendarQuery,
    Window,
    format_duration,
    format_local,
    format_span,
    percent,
    span,
    step_of,
    ticks,
    zone_label,
)

REFRESH_SECONDS = 60
"""How often the page reloads itself."""

ZONES = (
    "UTC", "Europe/London", "Europe/Berlin", "Europe/Madrid", "Europe/Athens", "America/New_York",
    "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Sao_Paulo", "Asia/Tokyo",
    "Asia/Shanghai", "Asia/Kolkata", "Australia/Sydney",
)
"""Time zones offered while typing (any IANA name is accepted)."""

_KIND_WORDS = {BlockKind.BOOKED: "Booked", BlockKind.RUNNING: "Running now", BlockKind.MAINTENANCE: "Maintenance"}
_STATE_CLASSES = {
    IslandState.IDLE: "ok",
    IslandState.IN_SLOT: "busy",
    IslandState.CONFIGURING: "busy",
    IslandState.FAILED: "bad",
    IslandState.UNKNOWN: "bad",
}

STYLE = """
:root { color-scheme: light; --ink: #1b1f24; --muted: #4a5360; --line: #c6ccd4; --track: #eef1f5;
  --booked: #1f4e9c; --running: #0b6138; --maint: #7a3e00; --now: #b3001b; --focus: #ffbf47; }
* { box-sizing: border-box; }
html { font-size: clamp(16px, 0.55vw + 12px, 30px); }
body { margin: 0; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: #fff; line-height: 1.4; }
header, main, footer { padding: 0.6rem 1rem; max-width: 120rem; margin: 0 auto; }
header { border-bottom: 1px solid var(--line); }
h1 { font-size: 1.5rem; margin: 0.2rem 0; }
h2 { font-size: 1.15rem; margin: 1.2rem 0 0.4rem; }
p { margin: 0.3rem 0; }
a { color: #0b4f9c; }
a:focus-visible, button:focus-visible, input:focus-visible, summary:focus-visible {
  outline: 3px solid var(--focus); outline-offset: 2px; box-shadow: 0 0 0 5px var(--ink); }
.muted { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
.state { font-weight: 600; }
.state.ok { color: var(--running); } .state.busy { color: var(--booked); } .state.bad { color: var(--now); }
nav { display: flex; flex-wrap: wrap; gap: 0.4rem 1.5rem; align-items: end; margin-top: 1rem; }
nav ul { list-style: none; padding: 0; margin: 0; display: flex; flex-wrap: wrap; gap: 0.4rem; }
nav a, button { display: inline-block; padding: 0.35rem 0.8rem; border: 1px solid var(--booked); border-radius: 0.3rem;
  color: var(--booked); background: #fff; text-decoration: none; font: inherit; cursor: pointer; }
nav a[aria-current] { background: var(--booked); color: #fff; }
button { background: var(--booked); color: #fff; }
.timeline { margin: 0.5rem 0; }
.row { display: grid; grid-template-columns: minmax(6rem, 12rem) 1fr; gap: 0.5rem; align-items: center; margin: 0.3rem 0; }
.row .name { font-weight: 600; overflow-wrap: anywhere; }
.track, .scale { position: relative; height: 2.6rem; background: var(--track); border-radius: 0.25rem; overflow: hidden; }
.scale { background: none; height: 1.4rem; overflow: visible; }
.tick { position: absolute; top: 0; bottom: 0; border-left: 1px solid var(--line); }
.scale .tick { font-size: 0.75rem; color: var(--muted); padding-left: 0.15rem; white-space: nowrap; }
.tick.day { border-left: 2px solid var(--muted); }
.scale .tick.minor { font-size: 0; }
.block { position: absolute; top: 0.2rem; bottom: 0.2rem; border-radius: 0.2rem; color: #fff; font-size: 0.8rem;
  padding: 0.15rem 0.3rem; overflow: hidden; white-space: nowrap; min-width: 3px; }
.block.booked { background: var(--booked); }
.block.running { background: var(--running); }
.block.maintenance { background: repeating-linear-gradient(135deg, var(--maint) 0 0.5rem, #5c2e00 0.5rem 1rem); }
.nowline { position: absolute; top: 0; bottom: 0; width: 0; border-left: 3px solid var(--now); }
.unknown { padding: 0.6rem; color: var(--now); font-size: 0.85rem; }
.legend { display: flex; flex-wrap: wrap; gap: 1rem; list-style: none; padding: 0; font-size: 0.9rem; }
.swatch { display: inline-block; width: 1rem; height: 1rem; vertical-align: -0.15rem; margin-right: 0.3rem; border-radius: 0.15rem; }
form.find, form.zone { display: flex; flex-wrap: wrap; gap: 0.6rem 1rem; align-items: end; }
form label { display: block; font-weight: 600; font-size: 0.9rem; }
input[type=text], input[type=datetime-local] { font: inherit; padding: 0.3rem 0.4rem; border: 1px solid var(--muted);
  border-radius: 0.25rem; min-width: 10rem; }
fieldset { border: 1px solid var(--line); border-radius: 0.25rem; }
fieldset label { display: inline-block; font-weight: normal; margin-right: 1rem; }
.answer { border-left: 4px solid var(--running); padding: 0.3rem 0.8rem; margin: 0.6rem 0; background: #f3f8f5; }
.problem { border-left: 4px solid var(--now); padding: 0.3rem 0.8rem; margin: 0.6rem 0; background: #fbf1f2; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
@media (min-width: 100rem) { .scale .tick.minor { font-size: 0.75rem; } }
@media (max-width: 40rem) {
  .row { grid-template-columns: 1fr; gap: 0.1rem; }
  .row.scale-row .name { display: none; }
}
"""


@dataclass(frozen=True)
class PageFacts:
    """
    Everything one rendering of the page shows.

    @ivar search: the free-slot answer, when a duration was asked for.
    @ivar unknown_islands: names asked for in the finder that match no island.
    @ivar feeds: the feed links, as C{(path, label)}.
    """

    schedule: Schedule
    query: CalendarQuery
    window: Window
    now: float
    search: FreeSearch | None = None
    unknown_islands: tuple[str, ...] = ()
    feeds: tuple[tuple[str, str], ...] = (("calendar.ics", "iCalendar feed"), ("schedule.json", "JSON"))


def link(query: CalendarQuery, **changes: str) -> str:
    """A link to the page with C{view}, C{date} and C{tz} of C{query}, changed as given."""
    keep = {name: query.value(name) for name in ("view", "date", "tz")}
    keep.update(changes)
    pairs = [(name, value) for name, value in keep.items() if value]
    return "?" + urlencode(pairs) if pairs else "./"


def render_page(facts: PageFacts) -> bytes:
    """The whole page as HTML bytes."""
    title = facts.schedule.title + " — calendar"
    body = tags.body(
        tags.header(
            tags.h1(facts.schedule.title),
            tags.p(
                "Now: ",
                tags.strong(format_local(facts.now, facts.query.zone)),
                f" ({facts.query.zone_name}, {zone_label(facts.now, facts.query.zone)})",
                class_="muted",
            ),
        ),
        Tag("main")(
            _now_section(facts),
            _navigation(facts),
            _timeline_section(facts),
            _finder_section(facts),
            _blocks_section(facts),
        ),
        _footer(facts),
    )
    return _document(title, body, refresh=True)


def render_problem(message: str, title: str = "Calendar") -> bytes:
    """A page saying what was wrong with the request (for a 400)."""
    body = tags.body(
        tags.header(tags.h1(title)),
        Tag("main")(
            tags.div(tags.h2("That request cannot be answered"), tags.p(message), class_="problem", role="alert"),
            tags.p(tags.a("Back to the calendar", href="./")),
        ),
    )
    return _document(f"{title} — bad request", body, refresh=False)


def _document(title: str, body: Tag, refresh: bool) -> bytes:
    head = tags.head(
        tags.meta(charset="utf-8"),
        tags.meta(name="viewport", content="width=device-width, initial-scale=1"),
        tags.meta(**{"http-equiv": "refresh", "content": str(REFRESH_SECONDS)}) if refresh else "",
        tags.title(title),
        tags.style(STYLE),
    )
    return b"<!DOCTYPE html>\n" + _flatten(tags.html(head, body, lang="en"))


def _flatten(root: Tag) -> bytes:
    """Flatten a tree holding no Deferreds (so it is done at once)."""
    result: list[bytes] = []
    failures: list[Any] = []
    flattenString(None, root).addCallbacks(result.append, failures.append)
    if failures:
        failures[0].raiseException()
    return result[0]


def _now_section(facts: PageFacts) -> Tag:
    federation = facts.schedule.federation
    header = tags.tr(
        tags.th("Island", scope="col"),
        tags.th("Now", scope="col"),
        tags.th("Aggregate" if federation else "Gateway link", scope="col"),
    )
    rows = []
    for row in facts.schedule.islands:
        state = tags.span(row.state.value, class_=f"state {_STATE_CLASSES[row.state]}")
        detail = [state, tags.br(), tags.span(row.detail, class_="muted")] if row.detail else [state]
        link_state = (row.reachability if federation else row.gateway) or "—"
        reach = "reachable: " + link_state if federation and row.reachable else link_state
        if federation and not row.reachable:
            reach = "unreachable: " + link_state
        rows.append(tags.tr(tags.th(row.name, scope="row", title=row.urn), tags.td(*detail), tags.td(reach)))
    return tags.section(
        tags.h2("The island now" if not federation else "The islands now", id="now-heading"),
        tags.table(tags.thead(header), tags.tbody(*rows), id="now"),
        **{"aria-labelledby": "now-heading"},
    )


def _navigation(facts: PageFacts) -> Tag:
    query = facts.query
    views = []
    for view, label in (("day", "Day"), ("week", "Week")):
        attrs = {"aria-current": "page"} if query.view == view else {}
        views.append(tags.li(tags.a(label, href=link(query, view=view), **attrs)))
    moves = [
        tags.li(tags.a("← Previous", href=link(query, date=step_of(query, -1).isoformat()), rel="prev")),
        tags.li(tags.a("Today", href=link(query, date=""))),
        tags.li(tags.a("Next →", href=link(query, date=step_of(query, 1).isoformat()), rel="next")),
    ]
    zone_form = tags.form(
        _hidden(query, ("view", "date")),
        tags.div(
            tags.label("Time zone", for_="tz"),
            tags.input(type="text", id="tz", name="tz", value=query.zone_name, list="zones", autocomplete="off"),
            tags.datalist(*[tags.option(value=zone) for zone in ZONES], id="zones"),
        ),
        tags.button("Show", type="submit"),
        method="get",
        action="./",
        class_="zone",
    )
    return tags.nav(
        tags.ul(*views, id="views"),
        tags.ul(*moves, id="moves"),
        zone_form,
        **{"aria-label": "Calendar views"},
    )


def _hidden(query: CalendarQuery, names: Sequence[str]) -> list[Tag]:
    return [tags.input(type="hidden", name=name, value=query.value(name)) for name in names if query.value(name)]


def _window_heading(facts: PageFacts) -> str:
    days = facts.window.days
    first = f"{days[0]:%a} {days[0].day} {days[0]:%b %Y}"
    if len(days) == 1:
        return first
    last = days[-1]
    return f"Week of {first} to {last:%a} {last.day} {last:%b %Y}"


def _timeline_section(facts: PageFacts) -> Tag:
    window, zone = facts.window, facts.query.zone
    marks = ticks(window, zone)
    scale = tags.div(
        *[
            tags.div(
                mark.label,
                class_="tick" + (" day" if mark.day else "") + ("" if mark.day or _major(mark.label) else " minor"),
                style=f"left:{mark.position}%",
            )
            for mark in marks
        ],
        class_="scale",
    )
    rows = [tags.div(tags.div("", class_="name"), scale, class_="row scale-row", **{"aria-hidden": "true"})]
    for row in facts.schedule.islands:
        rows.append(tags.div(tags.div(row.name, class_="name", title=row.urn), _track(facts, row, marks), class_="row"))
    kinds = sorted({b.kind for r in facts.schedule.islands for b in r.blocks} | {BlockKind.BOOKED, BlockKind.RUNNING})
    legend = tags.ul(
        *[tags.li(tags.span("", class_=f"swatch block-{kind.value}", style=_swatch(kind)), _KIND_WORDS[kind]) for kind in kinds],
        tags.li(tags.span("", class_="swatch", style="background:#b3001b;width:0.25rem"), "now"),
        class_="legend",
    )
    return tags.section(
        tags.h2(_window_heading(facts), f" ({facts.query.zone_name})", id="timeline-heading"),
        tags.p("Every block is also listed in the table of bookings below.", class_="visually-hidden"),
        tags.div(*rows, class_="timeline", id="timeline"),
        legend,
        **{"aria-labelledby": "timeline-heading"},
    )


def _major(label: str) -> bool:
    return label.endswith(":00") and int(label[:2]) % 3 == 0


def _swatch(kind: BlockKind) -> str:
    colours = {BlockKind.BOOKED: "#1f4e9c", BlockKind.RUNNING: "#0b6138", BlockKind.MAINTENANCE: "#7a3e00"}
    return f"background:{colours[kind]}"


def _track(facts: PageFacts, row: IslandRow, marks: Sequence[Any]) -> Tag:
    window, zone = facts.window, facts.query.zone
    parts: list[Any] = [tags.div(class_="tick" + (" day" if m.day else ""), style=f"left:{m.position}%") for m in marks]
    if not row.reachable:
        parts.append(tags.div(f"schedule unknown: {row.reachability}", class_="unknown"))
    for block in row.blocks_in(window.start, window.end):
        left, width = span(window, block.start, block.end)
        words = _describe_block(block, zone)
        parts.append(
            tags.div(
                _KIND_WORDS[block.kind],
                class_=f"block {block.kind.value}",
                style=f"left:{left}%;width:{width}%",
                title=words,
                **{"data-start": str(int(block.start)), "data-end": str(int(block.end))},
            )
        )
    if window.start <= facts.now < window.end:
        parts.append(tags.div("", class_="nowline", style=f"left:{percent(window, facts.now)}%", title="now"))
    return tags.div(*parts, class_="track", **{"data-island": row.urn})


def _describe_block(block: Block, zone: Any) -> str:
    words = f"{_KIND_WORDS[block.kind]}: {format_span(block.start, block.end, zone)}"
    return f"{words} ({block.reason})" if block.reason else words


def _finder_section(facts: PageFacts) -> Tag:
    query = facts.query
    earliest = ""
    if query.earliest is not None:
        earliest = datetime.fromtimestamp(query.earliest, query.zone).strftime("%Y-%m-%dT%H:%M")
    fields: list[Any] = [
        _hidden(query, ("view", "date", "tz")),
        tags.div(
            tags.label("Duration", for_="duration"),
            tags.input(
                type="text", id="duration", name="duration", value=query.value("duration") or "", placeholder="2h, 90m, 1h30m",
                required="required", **{"aria-describedby": "duration-help"},
            ),
            tags.span(" e.g. 2h or 1h30m", id="duration-help", class_="muted"),
        ),
        tags.div(
            tags.label(f"Earliest start ({query.zone_name}, optional)", for_="earliest"),
            tags.input(type="datetime-local", id="earliest", name="earliest", value=earliest),
        ),
    ]
    if facts.schedule.federation:
        chosen = set(query.islands)
        boxes: list[Tag] = []
        for row in facts.schedule.islands:
            box_id = f"island-{len(boxes)}"
            attrs = {"checked": "checked"} if not chosen or row.urn in chosen or row.name in chosen else {}
            boxes.append(tags.label(tags.input(type="checkbox", name="island", value=row.urn, id=box_id, **attrs), " ", row.name))
        fields.append(tags.fieldset(tags.legend("Islands that must all be free"), *boxes))
    fields.append(tags.button("Find free slots", type="submit"))
    return tags.section(
        tags.h2("Find a free slot", id="find-heading"),
        tags.form(*fields, method="get", action="./", class_="find", id="find"),
        _answer(facts),
        **{"aria-labelledby": "find-heading"},
    )


def _answer(facts: PageFacts) -> Tag | str:
    search, zone = facts.search, facts.query.zone
    if search is None and not facts.unknown_islands:
        return ""
    parts: list[Any] = []
    if facts.unknown_islands:
        parts.append(tags.p("No island is called ", ", ".join(facts.unknown_islands), "."))
    if search is not None:
        names = ", ".join(row.name for row in search.islands) or "no island"
        together = " all free together" if len(search.islands) > 1 else " free"
        parts.append(
            tags.p(
                f"Earliest slots of {format_duration(search.duration)} from {format_local(search.earliest, zone)} "
                f"with {names}{together}:"
            )
        )
        items = []
        for slot in search.slots:
            until = (
                f"free until {format_local(slot.free_until, zone)}" if slot.free_until is not None else "nothing booked after it"
            )
            day = datetime.fromtimestamp(slot.start, zone).date().isoformat()
            items.append(
                tags.li(
                    tags.strong(format_span(slot.start, slot.end, zone)),
                    f" — {until} ",
                    tags.a("show", href=link(facts.query, date=day), **{"aria-label": f"show {day}"}),
                    **{"data-start": str(int(slot.start))},
                )
            )
        parts.append(tags.ol(*items) if items else tags.p("No free slot is known."))
        for row in search.left_out:
            parts.append(tags.p(f"Left out, its schedule is unknown: {row.name} ({row.reachability})."))
    return tags.div(*parts, class_="answer", id="free-slots", role="status")


def _blocks_section(facts: PageFacts) -> Tag:
    window, zone = facts.window, facts.query.zone
    rows = []
    for row in facts.schedule.islands:
        for block in row.blocks_in(window.start, window.end):
            what = _KIND_WORDS[block.kind] + (f" ({block.reason})" if block.reason else "")
            rows.append(
                tags.tr(
                    tags.td(row.name),
                    tags.td(format_local(block.start, zone)),
                    tags.td(format_local(block.end, zone)),
                    tags.td(what),
                    class_=f"entry {block.kind.value}",
                )
            )
    body: Tag | str = (
        tags.table(
            tags.thead(tags.tr(*[tags.th(h, scope="col") for h in ("Island", "From", "Until", "What")])),
            tags.tbody(*rows),
            id="bookings",
        )
        if rows
        else tags.p("Nothing is booked in this view.", id="bookings")
    )
    return tags.section(
        tags.h2("Bookings in this view", id="bookings-heading"),
        tags.p("Bookings are anonymous: the calendar never says who holds a slot.", class_="muted"),
        body,
        **{"aria-labelledby": "bookings-heading"},
    )


def _footer(facts: PageFacts) -> Tag:
    feeds: list[Tag | str] = []
    for path, label in facts.feeds:
        feeds.append(tags.a(label, href=path))
        feeds.append(" · ")
    return tags.footer(
        tags.p("Subscribe: ", *feeds[:-1], class_="muted"),
        tags.p(f"This page refreshes itself every {REFRESH_SECONDS} seconds; times in {facts.query.zone_name}.", class_="muted"),
    )
