# -*- test-case-name: tests.cli.test_schedule -*-
"""
The calendar on a terminal: one line per island, one character per
stretch of time (C{#} booked, C{>} running, C{M} maintenance, C{.} free,
C{?} unknown), an hour scale above, and the blocks and free slots listed
in words below, in the viewer's time zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, tzinfo

from geniam.calendar.schedule import BlockKind, FreeSearch, IslandRow
from geniam.calendar.timeline import format_duration, format_local, format_span

MARKS = {BlockKind.BOOKED: "#", BlockKind.RUNNING: ">", BlockKind.MAINTENANCE: "M"}
FREE = "."
UNKNOWN = "?"
NAME_WIDTH = 22


def render_timeline(rows: Sequence[IslandRow], start: float, end: float, zone: tzinfo, width: int = 72) -> str:
    """
    The rows over C{[start, end)} as text: a scale, a bar per island, a
    legend and the blocks in words. A character is marked when any block
    touches its stretch.
    """
    step = (end - start) / width
    scale = [" "] * width
    labels = [" "] * (width + 6)
    last_label = -10
    for column in range(width):
        moment = start + column * step
        local = datetime.fromtimestamp(moment, zone)
        previous = datetime.fromtimestamp(moment - step, zone)
        if column == 0 or local.hour != previous.hour:
            scale[column] = "|"
            text = f"{local:%H}h"
            if column - last_label >= len(text) + 2:
                labels[column : column + len(text)] = list(text)
                last_label = column
    lines = [" " * NAME_WIDTH + "".join(labels).rstrip(), " " * NAME_WIDTH + "".join(scale)]
    for row in rows:
        bar = [FREE if row.reachable else UNKNOWN] * width
        for block in row.blocks_in(start, end):
            first = max(0, int((block.start - start) // step))
            last = min(width - 1, int((block.end - start - 1e-9) // step))
            for column in range(first, last + 1):
                bar[column] = MARKS[block.kind]
        lines.append(f"{_fit(row.name, NAME_WIDTH - 1):<{NAME_WIDTH}}" + "".join(bar))
    lines.append("")
    lines.append(f"{format_local(start, zone)} to {format_local(end, zone)}; one character is {format_duration(step)}")
    lines.append("# booked  > running now  M maintenance  . free  ? unknown")
    for row in rows:
        lines.append("")
        status = row.state.value if row.reachable else f"unreachable ({row.reachability})"
        lines.append(f"{row.name}: {status}")
        blocks = row.blocks_in(start, end)
        for block in blocks:
            reason = f" ({block.reason})" if block.reason else ""
            lines.append(f"  {format_span(block.start, block.end, zone)}  {block.kind.value}{reason}")
        if row.reachable and not blocks:
            lines.append("  nothing booked in this stretch")
    return "\n".join(lines)


def render_free(search: FreeSearch, zone: tzinfo) -> str:
    """A free-slot answer as text."""
    names = ", ".join(row.name for row in search.islands) or "no island"
    lines = [f"Earliest free slots of {format_duration(search.duration)} for {names}:"]
    for slot in search.slots:
        until = f"free until {format_local(slot.free_until, zone)}" if slot.free_until is not None else "nothing booked after it"
        lines.append(f"  {format_span(slot.start, slot.end, zone)}  ({until})")
    if not search.slots:
        lines.append("  none known")
    for row in search.left_out:
        lines.append(f"Left out, its schedule is unknown: {row.name} ({row.reachability})")
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1):]
