"""
The calendar's pure computations: blocks, half-open slots and the
free-slot search over bookings and maintenance windows.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.calendar.schedule import (
    Block,
    BlockKind,
    FreeSlot,
    IslandRow,
    IslandState,
    Schedule,
    blocks_from_slots,
    find_free,
    free_slots,
    island_name,
    merged_busy,
    state_from_blocks,
)

H = 3600.0
T0 = 1_800_000_000.0  # a whole minute


class BlockTests(SynchronousTestCase):
    """Blocks are half-open and anonymous."""

    def test_half_open(self) -> None:
        """A block holds its start and not its end."""
        block = Block(T0, T0 + H)
        self.assertTrue(block.contains(T0))
        self.assertFalse(block.contains(T0 + H))
        self.assertFalse(block.overlaps(T0 + H, T0 + 2 * H))
        self.assertTrue(block.overlaps(T0 + H - 1, T0 + 2 * H))

    def test_empty_refused(self) -> None:
        """A block must end after it starts."""
        self.assertRaises(ValueError, Block, T0, T0)
        self.assertRaises(ValueError, Block, T0, float("inf"))

    def test_running_is_the_slot_holding_now(self) -> None:
        """The slot holding the island now is running, the others booked; maintenance is kept with its reason."""
        maintenance = Block(T0 + 5 * H, T0 + 6 * H, BlockKind.MAINTENANCE, "new switch")
        blocks = blocks_from_slots([(T0 + 2 * H, T0 + 3 * H), (T0, T0 + H)], T0 + 0.5 * H, [maintenance])
        self.assertEqual([b.kind for b in blocks], [BlockKind.RUNNING, BlockKind.BOOKED, BlockKind.MAINTENANCE])
        self.assertEqual(blocks[2].reason, "new switch")

    def test_state_from_blocks(self) -> None:
        """An island is in a slot while a booking holds it, idle at the slot's end and in maintenance alone."""
        blocks = [Block(T0, T0 + H), Block(T0 + H, T0 + 2 * H, BlockKind.MAINTENANCE, "x")]
        self.assertEqual(state_from_blocks(blocks, T0), IslandState.IN_SLOT)
        self.assertEqual(state_from_blocks(blocks, T0 + H), IslandState.IDLE)

    def test_island_name(self) -> None:
        """An island is named by its aggregate's authority."""
        self.assertEqual(island_name("urn:publicid:IDN+lab:am1+authority+am"), "lab:am1")
        self.assertEqual(island_name("https://x/"), "https://x/")

    def test_select(self) -> None:
        """Islands are chosen by URN or name; unknown names are reported."""
        rows = (IslandRow("urn:publicid:IDN+a+authority+am", "a"), IslandRow("urn:publicid:IDN+b+authority+am", "b"))
        schedule = Schedule("t", T0, rows, True)
        self.assertEqual(schedule.select([]), (list(rows), []))
        self.assertEqual(schedule.select(["b", "urn:publicid:IDN+a+authority+am", "c"]), ([rows[1], rows[0]], ["c"]))


class FreeSlotTests(SynchronousTestCase):
    """The earliest free slots of a duration."""

    def test_nothing_booked(self) -> None:
        """With nothing booked the slot starts at the earliest start, open-ended."""
        self.assertEqual(free_slots([], 2 * H, T0), [FreeSlot(T0, T0 + 2 * H, None)])

    def test_back_to_back_is_free(self) -> None:
        """A slot may start the instant a booking ends, and a gap exactly as long as the duration fits."""
        busy = [(T0, T0 + H), (T0 + 3 * H, T0 + 4 * H)]
        slots = free_slots(busy, 2 * H, T0)
        self.assertEqual(slots[0], FreeSlot(T0 + H, T0 + 3 * H, T0 + 3 * H))
        self.assertEqual(slots[1], FreeSlot(T0 + 4 * H, T0 + 6 * H, None))

    def test_short_gaps_skipped(self) -> None:
        """A gap shorter than the duration is not offered."""
        busy = [(T0 + H, T0 + 2 * H), (T0 + 3 * H, T0 + 4 * H)]
        self.assertEqual(free_slots(busy, 1.5 * H, T0), [FreeSlot(T0 + 4 * H, T0 + 5.5 * H, None)])

    def test_earliest_rounded_up_to_the_minute(self) -> None:
        """Starts are whole minutes at or after the earliest start."""
        self.assertEqual(free_slots([], H, T0 + 1)[0].start, T0 + 60)
        self.assertEqual(free_slots([(T0, T0 + 90)], H, T0)[0].start, T0 + 120)

    def test_booking_in_progress(self) -> None:
        """A booking holding the earliest start pushes the slot to its end."""
        self.assertEqual(free_slots([(T0 - H, T0 + H)], H, T0)[0].start, T0 + H)

    def test_count_and_horizon(self) -> None:
        """At most C{count} slots, none starting at or after the horizon."""
        busy = [(T0 + n * 2 * H + H, T0 + (n + 1) * 2 * H) for n in range(10)]
        self.assertEqual(len(free_slots(busy, H, T0, count=3)), 3)
        self.assertEqual([s.start for s in free_slots(busy, H, T0, horizon=T0 + 4 * H)], [T0, T0 + 2 * H])

    def test_maintenance_counts_as_busy(self) -> None:
        """Maintenance blocks keep a slot off, like bookings, for every island searched."""
        one = IslandRow("urn:publicid:IDN+a+authority+am", "a", (Block(T0, T0 + H),))
        two = IslandRow("urn:publicid:IDN+b+authority+am", "b", (Block(T0 + H, T0 + 2 * H, BlockKind.MAINTENANCE, "x"),))
        search = find_free([one, two], H, T0)
        self.assertEqual(search.slots[0].start, T0 + 2 * H)

    def test_unreachable_islands_left_out(self) -> None:
        """An island whose schedule is unknown is named, not assumed free."""
        known = IslandRow("urn:publicid:IDN+a+authority+am", "a", (Block(T0, T0 + H),))
        lost = IslandRow("urn:publicid:IDN+b+authority+am", "b", (), IslandState.UNKNOWN, reachable=False)
        search = find_free([known, lost], H, T0)
        self.assertEqual(search.left_out, (lost,))
        self.assertEqual(search.islands, (known,))
        self.assertEqual(search.slots[0].start, T0 + H)
        self.assertEqual(find_free([lost], H, T0).slots, ())

    def test_bad_arguments(self) -> None:
        """The duration, count and step must be positive."""
        self.assertRaises(ValueError, free_slots, [], 0, T0)
        self.assertRaises(ValueError, free_slots, [], H, T0, count=0)

    @given(
        st.lists(st.tuples(st.integers(0, 500), st.integers(1, 100)), max_size=12),
        st.integers(1, 200),
        st.integers(0, 300),
    )
    def test_slots_are_free_and_earliest(self, raw: list[tuple[int, int]], minutes: int, offset: int) -> None:
        """Every slot found overlaps no busy interval, and no earlier start (in whole minutes) would fit."""
        busy = [(T0 + a * 60, T0 + (a + b) * 60) for a, b in raw]
        duration = minutes * 60.0
        earliest = T0 + offset * 60
        slots = free_slots(busy, duration, earliest, count=1)
        self.assertEqual(len(slots), 1)
        start = slots[0].start
        self.assertGreaterEqual(start, earliest)
        for s, e in busy:
            self.assertFalse(s < start + duration and start < e)
        for candidate in range(int(earliest), int(start), 60):
            self.assertTrue(any(s < candidate + duration and candidate < e for s, e in busy))

    def test_merged_busy(self) -> None:
        """Overlapping and touching intervals are coalesced."""
        self.assertEqual(merged_busy([(3, 4), (0, 1), (1, 2), (1.5, 2.5)]), [(0, 2.5), (3, 4)])
