# -*- test-case-name: tests.managers.test_island,tests.loopback.test_island_agent,tests.loopback.test_store_recovery -*-
"""
One run of the island's periodic check: lapse expired allocations, end
slots that are over, remove configuration left on the gateway, repair drift
when asked, start slots in progress, then re-arm the boundary timer.

L{geniam.managers.scheduler.Scheduler} decides when a run happens; this
module is what a run does. A failure of one booking's work is logged and
the run goes on with the next; a L{StoreError} ends the run (the whole
check waits for the database).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import DeferredLock
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.lifecycle import Event
from geniam.booking.values import AllocationState, Booking
from geniam.errors import GeniError
from geniam.interfaces import IStore
from geniam.managers.bookingchanges import BookingChanges
from geniam.managers.errors import DomainError
from geniam.managers.gatewaysync import GatewaySync
from geniam.managers.scheduler import Backoff
from geniam.store.errors import StoreError

if TYPE_CHECKING:
    from geniam.managers.driver import GatewayDriver


class PeriodicCheck:
    """
    The island's periodic check over its store, booking changes, gateway
    synchronisation and retry back-off; gateway work runs under C{lock}.

    @param rearm: re-arms the boundary timer at the end of a run.
    @param driver: the election of the process that drives the gateway
        (several AM processes on one database); without one this process
        always drives. Only the driver ends and starts slots, cleans up and
        repairs drift; every process lapses expired allocations.
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        clock: IReactorTime,
        lock: DeferredLock,
        changes: BookingChanges,
        sync: GatewaySync,
        backoff: Backoff,
        rearm: Callable[[], Awaitable[None]],
        driver: "GatewayDriver | None" = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._lock = lock
        self._changes = changes
        self._sync = sync
        self._backoff = backoff
        self._rearm = rearm
        self._driver = driver

    async def run(self, repair: bool) -> None:
        """One run of the check; C{repair} says whether to repair drift."""
        now = self._clock.seconds()
        due = await self._store.due(now)
        self._backoff.keep_only(b.sliver_key for b in due.start + due.cleanup + due.end)
        for b in due.expire:
            await self._guarded(self._expire(b.sliver_urn), b)
        if self._driver is not None and not await self._driver.confirm():
            await self._rearm()  # only expiry is this process's work
            return
        for b in due.end:
            await self._guarded(self._locked(self._sync.end_locked, b.sliver_urn), b)
        for b in due.cleanup:
            if self._backoff.may_retry(b.sliver_key, now):
                await self._guarded(self._locked(self._sync.cleanup_locked, b.sliver_urn), b)
        if repair:
            try:
                async with self._lock:
                    await self._sync.repair_locked()
            except StoreError:
                raise
            except Exception:
                self.log.failure("drift repair failed")
        for b in due.start:
            if self._backoff.may_retry(b.sliver_key, now):
                await self._guarded(self._locked(self._sync.start_locked, b.sliver_urn), b)
        await self._rearm()

    async def _guarded(self, work: Awaitable[Any], booking: Booking) -> None:
        try:
            await work
        except StoreError:
            raise  # the whole check waits for the database
        except DomainError as e:
            self.log.warn("island check of {sliver}: {error}", sliver=booking.sliver_urn, error=e.message)
        except GeniError as e:
            self.log.warn("island check of {sliver}: {error}", sliver=booking.sliver_urn, error=e.output)
        except Exception:
            self.log.failure("island check of {sliver} failed", sliver=booking.sliver_urn)

    async def _locked(self, work: Callable[[str], Awaitable[Any]], urn: str) -> None:
        async with self._lock:
            await work(urn)

    async def _expire(self, urn: str) -> None:
        new = await self._changes.step_one(urn, Event.EXPIRE)
        if new.allocation_state is AllocationState.EXPIRED:
            self.log.info("allocation {sliver} expired", sliver=urn)
