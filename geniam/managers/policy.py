# -*- test-case-name: tests.managers.test_policy -*-
"""
The AM's booking policy: pure rules on a requested slot, without I/O.

L{BookingPolicy} holds the limits an operator sets (C{--max-slot-length},
C{--min-slot-length}, C{--max-advance}, C{--user-quota},
C{--slice-quota}, C{--quota-window}); L{check_policy} refuses a slot
outside them with L{PolicyRefusal} (REFUSED at the edge), whose message
names the limit. A limit of 0 is off. The quotas bound the booked time one
user (or one slice) may hold within any window of C{quota_window}
seconds: the slot asked for plus their other live bookings.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from geniam.booking.errors import NotPermitted
from geniam.booking.values import DEFAULT_MAX_SLOT_LENGTH, Slot
from geniam.timeutil import format_time

DEFAULT_QUOTA_WINDOW = 7 * 86400.0
"""The window the quotas are counted in, by default (7 days)."""


class PolicyRefusal(NotPermitted):
    """A slot outside the AM's booking policy; the message names the limit."""


def span_words(seconds: float) -> str:
    """A duration in words, exact to the second: C{7 d}, C{2 h 30 min}, C{45 s}."""
    total = int(round(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min" if minutes else "", f"{secs} s" if secs else ""]
    return " ".join(p for p in parts if p) or "0 s"


@dataclass(frozen=True)
class BookingPolicy:
    """
    The limits on what one booking request may ask for; seconds, 0 for off.

    @ivar max_slot_length: the longest slot.
    @ivar min_slot_length: the shortest slot.
    @ivar max_advance: how far ahead of now a slot may start.
    @ivar user_quota: the most booked time one user may hold in a quota window.
    @ivar slice_quota: the most booked time one slice may hold in a quota window.
    @ivar quota_window: the length of the window the quotas are counted in.
    """

    max_slot_length: float = DEFAULT_MAX_SLOT_LENGTH
    min_slot_length: float = 0.0
    max_advance: float = 0.0
    user_quota: float = 0.0
    slice_quota: float = 0.0
    quota_window: float = DEFAULT_QUOTA_WINDOW

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{f.name} must be a number of seconds, 0 or more")
        if self.max_slot_length <= 0:
            raise ValueError("max_slot_length must be positive")
        if self.quota_window <= 0:
            raise ValueError("quota_window must be positive")
        if self.min_slot_length > self.max_slot_length:
            raise ValueError("min_slot_length must not exceed max_slot_length")

    def as_struct(self) -> dict[str, float]:
        """The policy as an XML-RPC struct (GetVersion's C{geniam_booking_policy}): seconds, 0 for off."""
        return {name: float(value) for name, value in asdict(self).items()}

    def changed(self, settings: Mapping[str, Any]) -> BookingPolicy:
        """
        This policy with C{settings} (names of L{as_struct}) changed.

        @raise ValueError: for an unknown name or a value that is no limit.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown policy setting {unknown[0]!r}; known: {', '.join(sorted(known))}")
        values: dict[str, float] = {}
        for name, value in settings.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number of seconds")
            values[name] = float(value)
        return replace(self, **values)


def booked_in_windows(slot: Slot, others: Iterable[Slot], window: float) -> float:
    """
    The most booked time (C{slot} plus C{others}, overlaps counted once
    each) within any window of C{window} seconds that overlaps C{slot}.

    The booked time in a sliding window is piecewise linear in its start,
    so its maximum is reached with an edge of the window on a boundary of
    some slot; only those window positions are tried.
    """
    slots = [slot, *(o for o in others if o.start < slot.end + window and o.end > slot.start - window)]
    edges = {b for s in slots for b in (s.start, s.end)}
    starts = {e for e in edges} | {e - window for e in edges}
    best = 0.0
    for start in starts:
        end = start + window
        if end <= slot.start or start >= slot.end:
            continue
        best = max(best, sum(max(0.0, min(end, s.end) - max(start, s.start)) for s in slots))
    return best


def check_policy(
    policy: BookingPolicy, slot: Slot, now: float, user_slots: Iterable[Slot] = (), slice_slots: Iterable[Slot] = ()
) -> None:
    """
    Refuse C{slot} unless it is within C{policy}.

    @param now: the time of the request (for how far ahead it starts).
    @param user_slots: the slots of the requesting user's other live bookings.
    @param slice_slots: the slots of the slice's other live bookings.
    @raise PolicyRefusal: naming the limit the slot passes.
    """
    length = slot.duration
    if length > policy.max_slot_length:
        raise PolicyRefusal(
            f"the slot is {span_words(length)} long; the longest slot this aggregate allows is {span_words(policy.max_slot_length)} (max_slot_length)"
        )
    if length < policy.min_slot_length:
        raise PolicyRefusal(
            f"the slot is {span_words(length)} long; the shortest slot this aggregate allows is {span_words(policy.min_slot_length)} (min_slot_length)"
        )
    if policy.max_advance and slot.start - now > policy.max_advance:
        raise PolicyRefusal(
            f"the slot starts at {format_time(slot.start)}; slots may start at most {span_words(policy.max_advance)} ahead, "
            f"by {format_time(now + policy.max_advance)} (max_advance)"
        )
    for quota, name, who, others in (
        (policy.user_quota, "user_quota", "one user", user_slots),
        (policy.slice_quota, "slice_quota", "one slice", slice_slots),
    ):
        if not quota:
            continue
        booked = booked_in_windows(slot, list(others), policy.quota_window)
        if booked > quota:
            raise PolicyRefusal(
                f"with this slot {who} would hold {span_words(booked)} within {span_words(policy.quota_window)}; "
                f"the most {who} may hold is {span_words(quota)} ({name})"
            )
