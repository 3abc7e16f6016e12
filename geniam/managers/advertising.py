# -*- test-case-name: tests.managers.test_advertising -*-
"""
The aggregate manager's ListResources answer, built only when it changes.

What the advertisement shows depends on the island's devices, the booked
slots and the time (a slot starting or ending changes C{<available>} and
the schedule). L{AdvertisementCache} keeps the booked slots it last read
from the store and the encoded answers made from them:

  - a booking written by this process's island manager drops them at once
    (L{AdvertisementCache.invalidate}, an observer of the island manager);
  - bookings written by another process sharing the database (several
    aggregate managers on one PostgreSQL database) are seen within
    L{RECHECK_INTERVAL}: the slots are read again that often while calls
    come in (one small query a second, not one per call);
  - at the next start or end of a booked slot they are read and built again;
  - a new inventory of the island gives new resources, hence new answers;
  - maintenance windows are read with the slots and count as boundaries.

The encoded answer itself (the advertisement, compressed or not, inside
its XML-RPC C{methodResponse}) is made at most once per second per
variant: its C{generated} attribute has whole seconds.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime

from geniam.booking.maintenance import MaintenanceWindow
from geniam.booking.values import Slot
from geniam.errors import success_struct
from geniam.protocols.marshal import EncodedResponse, encoded_response
from geniam.rspec.advertisement import build_advertisement
from geniam.rspec.compression import compress_rspec
from geniam.rspec.resources import IslandResources

RECHECK_INTERVAL = 1.0
"""Seconds the booked slots read from the store are trusted without reading them again."""

FAR_FUTURE = 366 * 86400.0
"""How far ahead the advertisement's schedule looks."""


class AdvertisementCache:
    """
    The encoded ListResources answers of one island (see the module docstring).

    @param resource_manager: the island's L{geniam.interfaces.IResourceManager};
        if it has C{observe_bookings}, its changes invalidate the cache at once.
    @param island: fires with the island's current L{IslandResources}.
    @param clock: the time.
    @param booked: fires with the booked slots overlapping a window
        (default: the resource manager's C{booked_slots}).
    @param maintenance: fires with the maintenance windows overlapping a
        window, if the island has them.
    """

    def __init__(
        self,
        resource_manager: Any,
        island: Callable[[], Awaitable[IslandResources]],
        clock: IReactorTime,
        recheck_interval: float = RECHECK_INTERVAL,
        booked: Callable[[Slot], Awaitable[Sequence[Slot]]] | None = None,
        maintenance: Callable[[Slot], Awaitable[Sequence[MaintenanceWindow]]] | None = None,
    ) -> None:
        self._booked = booked or resource_manager.booked_slots
        self._maintenance = maintenance
        self._island = island
        self._clock = clock
        self._recheck_interval = recheck_interval
        self._generation = 0
        self._resources: IslandResources | None = None
        self._slots: tuple[tuple[float, float], ...] = ()
        self._windows: tuple[tuple[float, float, str], ...] = ()
        self._valid_until = -math.inf
        self._answers: dict[tuple[bool, bool, int], EncodedResponse] = {}
        observe = getattr(resource_manager, "observe_bookings", None)
        if observe is not None:
            observe(self.invalidate)

    def invalidate(self) -> None:
        """Forget the booked slots and the answers: the next call reads the store again."""
        self._generation += 1
        self._valid_until = -math.inf
        self._answers.clear()

    async def answer(self, available_only: bool, compressed: bool) -> EncodedResponse:
        """
        The ListResources return struct (encoded) for these options, now.

        @param available_only: the C{geni_available} option.
        @param compressed: the C{geni_compressed} option.
        """
        resources = await self._island()
        now = self._clock.seconds()
        if now >= self._valid_until or resources is not self._resources:
            generation = self._generation
            ahead = Slot(now, now + FAR_FUTURE)
            booked = await self._booked(ahead)
            slots = tuple(sorted((float(s.start), float(s.end)) for s in booked))
            closed = await self._maintenance(ahead) if self._maintenance is not None else []
            windows = tuple((w.slot.start, w.slot.end, w.reason) for w in closed)
            if generation != self._generation:
                # A booking changed while the store was read: answer, remember nothing.
                return _encode(resources, slots, windows, now, available_only, compressed)
            self._answers.clear()
            self._resources, self._slots, self._windows = resources, slots, windows
            edges = [t for slot in slots for t in slot] + [t for start, end, _ in windows for t in (start, end)]
            boundary = min((t for t in edges if t > now), default=math.inf)
            self._valid_until = min(boundary, now + self._recheck_interval)
        key = (available_only, compressed, int(now))
        answer = self._answers.get(key)
        if answer is None:
            if any(k[2] != key[2] for k in self._answers):
                self._answers = {k: v for k, v in self._answers.items() if k[2] == key[2]}
            answer = self._answers[key] = _encode(resources, self._slots, self._windows, now, available_only, compressed)
        return answer


def _encode(
    resources: IslandResources,
    slots: tuple[tuple[float, float], ...],
    windows: tuple[tuple[float, float, str], ...],
    now: float,
    available_only: bool,
    compressed: bool,
) -> EncodedResponse:
    ad = build_advertisement(resources, slots, now, available_only=available_only, maintenance=list(windows))
    return encoded_response(success_struct(compress_rspec(ad) if compressed else ad))
