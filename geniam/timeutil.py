# -*- test-case-name: tests.test_foundation -*-
"""
Time on the wire and in the domain.

The domain speaks in POSIX seconds (floats, UTC), the unit of
C{IReactorTime.seconds()}, so a L{twisted.internet.task.Clock} drives it.
The wire speaks RFC 3339 strings with a zone; zone-less times are UTC.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

from geniam.errors import GeniCode, GeniError

_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]{1,9})?"
    r"(Z|z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
)


def parse_time(text: str) -> float:
    """
    Parse an RFC 3339 date-time (zone optional, UTC assumed) to POSIX seconds.

    Strictly: ASCII digits only, the whole string must match, offsets
    within -23:59..+23:59.

    @raise GeniError: BADARGS if C{text} is not such a string.
    """
    if not isinstance(text, str):
        raise GeniError(GeniCode.BADARGS, f"expected an RFC 3339 time string, got {type(text).__name__}")
    match = _RFC3339.fullmatch(text.strip(" \t\r\n"))
    if match is None:
        raise GeniError(GeniCode.BADARGS, f"not an RFC 3339 time: {text[:64]!r}")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float(match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    try:
        stamp = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError as e:
        raise GeniError(GeniCode.BADARGS, f"not a valid date-time: {text[:64]!r} ({e})") from None
    offset = 0
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return stamp.timestamp() + fraction - offset


def format_time(seconds: float) -> str:
    """Format POSIX seconds as RFC 3339 UTC without fractions (C{2026-11-22T12:00:00Z})."""
    return datetime.fromtimestamp(int(seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_datetime(seconds: float) -> datetime:
    """Return an aware UTC datetime for POSIX seconds."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def from_datetime(moment: datetime) -> float:
    """Return POSIX seconds for a datetime; a naive one is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()
