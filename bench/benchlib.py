# -*- test-case-name: tests.managers.test_island_sqlite,tests.store.test_postgres -*-
"""
What the booking benchmarks share: the bench slice, the bookings they seed
a database with, and how they time and report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from geniam.booking.values import AllocationState, Slot

AUTHORITY = "bench.example.net:island"
SLICE = "urn:publicid:IDN+bench.example.net+slice+bench"
OWNER = "urn:publicid:IDN+bench.example.net+user+bench"
HOUR = 3600.0
SLOT = 2 * HOUR


def seed_plan(count: int, now: float) -> tuple[list[tuple[Slot, AllocationState]], list[Slot]]:
    """
    Plan C{count} bookings: the first half ended in the past, the second
    half live, one hour each every two hours from tomorrow on. Return each
    booking's slot and state, and the free hour after each live one.
    """
    history = count // 2
    gaps = []
    bookings = []
    for i in range(count):
        if i < history:
            start, state = now - (history - i) * SLOT - HOUR, AllocationState.ENDED
        else:
            start = now + 24 * HOUR + (i - history) * SLOT
            state = AllocationState.PROVISIONED if i % 2 else AllocationState.ALLOCATED
            gaps.append(Slot(start + HOUR, start + SLOT))
        bookings.append((Slot(start, start + HOUR), state))
    return bookings, gaps


async def timed(action: Callable[[], Awaitable[Any]]) -> float:
    """Return how long C{action} took, in milliseconds."""
    began = time.perf_counter()
    await action()
    return (time.perf_counter() - began) * 1000


def report(label: str, samples: list[float]) -> None:
    """Print the median and 95th percentile of C{samples}."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    print(f"{label:<48} n={len(samples):<5} median {statistics.median(samples):7.2f} ms   p95 {p95:7.2f} ms")
