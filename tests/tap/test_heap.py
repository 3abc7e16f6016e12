# -*- test-case-name: tests.tap.test_heap -*-
"""
Tests for L{geniam.tap.heap}.
"""

from __future__ import annotations

import gc

from twisted.trial.unittest import SynchronousTestCase

from geniam.tap.heap import settle_heap


class _Cycle:
    """An object in a reference cycle with itself."""

    def __init__(self) -> None:
        self.me = self


class SettleHeapTests(SynchronousTestCase):
    """settle_heap."""

    def setUp(self) -> None:
        self.addCleanup(gc.unfreeze)  # the test process's objects go back to the collector

    def test_survivors_left_out(self) -> None:
        """Live objects are left out of later collections, garbage is not kept."""
        kept = _Cycle()
        garbage = _Cycle()
        del garbage
        frozen = settle_heap()
        self.assertGreater(frozen, 0)
        self.assertEqual([o for o in gc.get_objects() if isinstance(o, _Cycle)], [])  # not watched any more
        self.assertIs(kept.me, kept)
        gc.unfreeze()
        self.assertEqual([o for o in gc.get_objects() if isinstance(o, _Cycle)], [kept])  # the garbage was collected first
