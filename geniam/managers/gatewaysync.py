# -*- test-case-name: tests.managers.test_gatewaysync,tests.managers.test_island,tests.loopback.test_island_agent -*-
"""
Keeping the island's gateway in line with its bookings.

What to send is pure: L{plan} turns what the gateway reports
(C{observed}) and what a booking needs (C{wanted}) into the gateway
actions that change one into the other, and L{removal_plan} into those that
take a booking's configuration off. L{GatewaySync} sends them and records
the outcome in the booking through L{geniam.booking.lifecycle.step}:
starting a slot, pushing an update, removing a configuration, cleaning up
after bookings no longer live, and drift repair (L{GatewaySync.repair_locked}).

Methods named C{..._locked} expect the caller to hold the island's lock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import CancelledError, TimeoutError, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from geniam.booking.lifecycle import Event, Removal
from geniam.booking.rules import needs_cleanup, needs_end, needs_start
from geniam.booking.values import AllocationState, Booking, OperationalState, Slot, urn_key
from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.interfaces import IGatewayAgent, IStore
from geniam.managers.bookingchanges import BookingChanges
from geniam.managers.scheduler import BOUNDARY_SLACK, Backoff

NOT_DRIVER = "another aggregate-manager process drives the island's gateway; it applies this at its next check"
"""Why a process that is not the gateway driver sends the gateway nothing."""

UNREACHABLE_CODES = frozenset({GeniCode.RPCERROR, GeniCode.TIMEDOUT})
"""Gateway failures that mean the agent could not be reached (the booking shows configuring meanwhile)."""


@dataclass(frozen=True)
class GatewayAction:
    """
    One call to the gateway.

    @ivar verb: the L{IGatewayAgent} method (C{set_user_auth}, C{reset}, ...).
    @ivar args: its arguments.
    @ivar note: what it does, for the log (empty for removals).
    """

    verb: str
    args: tuple[Any, ...] = ()
    note: str = ""


def plan(observed: GatewayConfig, wanted: GatewayConfig) -> list[GatewayAction]:
    """
    The actions that change the gateway from C{observed} to exactly
    C{wanted}, in the order to send them: stray keys off, missing keys on,
    then the proxy and the VLAN map if they differ. Empty if they match.
    """
    actions: list[GatewayAction] = []
    stray = [key for key in observed.users if key not in wanted.users]
    if stray:
        actions.append(GatewayAction("rem_user_auth", (stray,), f"removed {len(stray)} SSH key(s)"))
    missing = [key for key in wanted.users if key not in observed.users]
    if missing:
        actions.append(GatewayAction("set_user_auth", (missing,), f"added {len(missing)} SSH key(s)"))
    if observed.proxy != wanted.proxy:
        if wanted.proxy:
            actions.append(GatewayAction("set_tcp_proxy", (wanted.proxy,), f"proxy to {wanted.proxy}"))
        else:
            actions.append(GatewayAction("rem_tcp_proxy", (), "stopped the proxy"))
    if dict(observed.vlans) != dict(wanted.vlans):
        if wanted.vlans:
            actions.append(GatewayAction("set_ovs", (dict(wanted.vlans),), f"VLAN map {dict(wanted.vlans)}"))
        else:
            actions.append(GatewayAction("rem_ovs", (), "removed the VLAN map"))
    return actions


def removal_plan(booking: Booking) -> list[GatewayAction]:
    """
    The actions that take C{booking}'s configuration off the gateway: a
    reset when it may be half applied (configuring or failed), else its
    keys, the proxy and the VLAN map, each removed on its own.
    """
    if booking.operational_state in (OperationalState.CONFIGURING, OperationalState.FAILED):
        return [GatewayAction("reset")]
    actions = [GatewayAction("rem_user_auth", (list(booking.ssh_keys),))] if booking.ssh_keys else []
    return actions + [GatewayAction("rem_tcp_proxy"), GatewayAction("rem_ovs")]


def needs_push(old: Booking, new: Booking) -> bool:
    """True if a ready booking changed from C{old} to C{new} needs the gateway changed."""
    return GatewayConfig.of(old) != GatewayConfig.of(new)


class GatewaySync:
    """
    Sends the island's bookings to its gateway and records the outcome.

    @param store: where bookings persist.
    @param changes: reads and writes of those bookings.
    @param gateway: the island's gateway agent.
    @param clock: the clock for timeouts and timestamps.
    @param timeout: seconds a gateway call may take.
    @param backoff: when failed work is retried.

    @ivar may_change: whether this process may change the gateway now (it
        is the island's gateway driver); changes fail with RPCERROR when not.
    @ivar lateness: called with C{"start"} or C{"end"} and the seconds
        between a slot's boundary and when its configuration was applied or
        removed, if set.
    @ivar retried: called each time failed gateway work is scheduled for a
        retry, if set.
    """

    log = Logger()

    def __init__(
        self,
        store: IStore,
        changes: BookingChanges,
        gateway: IGatewayAgent,
        clock: IReactorTime,
        timeout: float,
        backoff: Backoff,
    ) -> None:
        self._store = store
        self._changes = changes
        self._gateway = gateway
        self._clock = clock
        self._timeout = timeout
        self.backoff = backoff
        self.may_change: Callable[[], bool] = lambda: True
        self.lateness: Callable[[str, float], object] | None = None
        self.retried: Callable[[], object] | None = None

    # Calls.

    def online(self) -> bool:
        """False only while a gateway that reports its connection says it has none."""
        return bool(getattr(self._gateway, "connected", True))

    async def call(self, name: str, *args: Any) -> Any:
        """
        Call the gateway's C{name} within the timeout.

        @raise GeniError: TIMEDOUT if it did not answer in time, RPCERROR
            if it failed otherwise, or its own L{GeniError}.
        """
        method = getattr(self._gateway, name)
        try:
            d = maybeDeferred(method, *args)
            d.addTimeout(self._timeout, self._clock)
            return await d
        except (GeniError, CancelledError):
            raise
        except TimeoutError:
            raise GeniError(GeniCode.TIMEDOUT, f"the gateway did not answer {name} within {self._timeout:g} s") from None
        except Exception as e:
            raise GeniError(GeniCode.RPCERROR, f"gateway {name} failed: {e}") from e

    async def change(self, name: str, *args: Any) -> Any:
        """
        Call a gateway method that changes it (see L{call}).

        @raise GeniError: RPCERROR if this process does not drive the gateway.
        """
        if not self.may_change():
            raise GeniError(GeniCode.RPCERROR, NOT_DRIVER)
        return await self.call(name, *args)

    def _late(self, edge: str, booking: Booking, boundary: float) -> None:
        seconds = max(0.0, self._clock.seconds() - boundary)
        self.log.info(
            "the {edge} of {sliver}'s slot reached the gateway {seconds:.3f} s after it", edge=edge, sliver=booking.sliver_urn, seconds=seconds
        )
        if self.lateness is not None:
            self.lateness(edge, seconds)

    def _retrying(self) -> None:
        if self.retried is not None:
            self.retried()

    async def observe(self) -> GatewayConfig:
        """Fire with what the gateway reports it holds."""
        return GatewayConfig.from_report(await self.call("state"))

    async def converge(self, booking: Booking, observed: GatewayConfig) -> list[str]:
        """
        Change the gateway from C{observed} to exactly what C{booking} needs;
        return what was changed, for the log. Stops at the first failure.
        """
        done: list[str] = []
        for action in plan(observed, GatewayConfig.of(booking)):
            await self.change(action.verb, *action.args)
            done.append(action.note)
        return done

    async def _remove_config(self, booking: Booking) -> None:
        """Send every removal action; raise the first failure once all were tried."""
        errors = []
        for action in removal_plan(booking):
            try:
                await self.change(action.verb, *action.args)
            except GeniError as e:
                errors.append(e)
        if errors:
            raise errors[0]

    # Starting and updating.

    async def start_locked(
        self, urn: str, manual: bool = False, reset_first: bool = False, observed: GatewayConfig | None = None
    ) -> Booking:
        """
        Apply a booking's configuration to the gateway now: read what the
        gateway holds (or reset it first), then apply the difference. The
        booking becomes ready, or stays configuring while the agent is
        unreachable, or fails when the agent refuses; the last two are
        retried.

        @param manual: start even if the booking is ready or stopped (an
            operational action or a repair).
        @param observed: what the gateway was just seen to hold, if known.
        """
        booking = await self._changes.get(urn)
        now = self._clock.seconds()
        in_slot = booking.allocation_state is AllocationState.PROVISIONED and booking.slot.contains(now)
        if not in_slot or not (manual or needs_start(booking, now)):
            return booking
        try:
            if reset_first:
                await self.change("reset")
                observed = GatewayConfig()
            elif observed is None:
                observed = await self.observe()
        except GeniError as e:
            return await self.record_failure(urn, e)
        booking = await self._changes.step_one(urn, Event.CONFIGURE)
        if booking.operational_state is not OperationalState.CONFIGURING:
            return booking
        self.log.info("starting slot {slot} of {sliver}", slot=str(booking.slot), sliver=urn)
        try:
            await self.converge(booking, observed)
        except GeniError as e:
            return await self.record_failure(urn, e)
        await self.mark_others_removed(booking.sliver_key)
        ready = await self.record_success(urn)
        if not manual or observed is not None:
            self._late("start", booking, booking.slot.start)
        return ready

    async def push_update_locked(self, old: Booking, new: Booking) -> Booking:
        """Push the difference between two versions of a ready booking."""
        current = await self._changes.step_one(
            new.sliver_urn, Event.CONFIGURE, only_if=lambda b: b.operational_state is OperationalState.READY
        )
        if current.operational_state is not OperationalState.CONFIGURING:
            return current
        try:
            await self.converge(current, GatewayConfig.of(old))
        except GeniError as e:
            return await self.record_failure(new.sliver_urn, e)
        return await self.record_success(new.sliver_urn)

    async def record_success(self, urn: str) -> Booking:
        """Record that a booking's configuration is on the gateway."""
        self.backoff.forget(urn_key(urn))
        return await self._changes.step_one(
            urn, Event.READY, only_if=lambda b: b.operational_state is OperationalState.CONFIGURING
        )

    async def record_failure(self, urn: str, error: GeniError) -> Booking:
        """
        Record that applying a booking failed and schedule a retry: it shows
        configuring while the agent is unreachable, failed when it refused.
        """
        delay = self.backoff.note_failure(urn_key(urn))
        self._retrying()
        unreachable = error.code in UNREACHABLE_CODES
        if unreachable:
            self.log.warn(
                "gateway unreachable for {sliver}: {error}; retrying in {delay:g} s or when it returns",
                sliver=urn,
                error=error.output,
                delay=delay,
            )
        else:
            self.log.warn("gateway failed for {sliver}: {error}; retrying in {delay:g} s", sliver=urn, error=error.output, delay=delay)
        event = Event.UNREACHABLE if unreachable else Event.FAIL
        return await self._changes.step_one(urn, event, error=f"gateway: {error.output}")

    # Removing.

    async def remove_locked(self, booking: Booking) -> Removal:
        """Remove a booking's configuration from the gateway if it may be there; say what that left."""
        if not booking.applied:
            return Removal(False, booking.error)
        try:
            await self._remove_config(booking)
        except GeniError as e:
            delay = self.backoff.note_failure(booking.sliver_key)
            self._retrying()
            self.log.warn(
                "could not remove {sliver} from the gateway: {error}; retrying in {delay:g} s",
                sliver=booking.sliver_urn,
                error=e.output,
                delay=delay,
            )
            return Removal(True, f"gateway: could not remove the configuration: {e.output}")
        self.backoff.forget(booking.sliver_key)
        return Removal()

    async def mark_others_removed(self, keep: str | None) -> None:
        """Record that only the booking C{keep} (a sliver key, or None) may have configuration on the gateway."""
        for other in await self._store.list_applied():
            if other.sliver_key != keep:
                self.backoff.forget(other.sliver_key)
                await self._changes.step_one(other.sliver_urn, Event.REMOVED)

    async def end_locked(self, urn: str) -> None:
        """Take a booking whose slot is over off the gateway and mark it ended."""
        booking = await self._changes.get(urn)
        if not needs_end(booking, self._clock.seconds()):
            return
        removal = await self.remove_locked(booking)
        new = await self._changes.step_one(urn, Event.END, removal=removal)
        if new.allocation_state is AllocationState.ENDED:
            self._late("end", new, new.slot.end)
            self.log.info("slot {slot} of {sliver} ended", slot=str(new.slot), sliver=urn)
        elif new.applied and not removal.still_applied:
            await self._changes.step_one(urn, Event.REMOVED)

    async def cleanup_locked(self, urn: str) -> None:
        """Remove configuration left by a booking no longer live, or stopped, unless another booking holds the gateway."""
        booking = await self._changes.get(urn)
        if not needs_cleanup(booking):
            return
        holders = [b for b in await self._store.list_applied() if b.live and not needs_cleanup(b)]
        if holders:
            return
        removal = await self.remove_locked(booking)
        if removal.still_applied:
            return
        await self._changes.step_one(urn, Event.CLEANED)

    # Drift repair.

    async def _target(self, now: float) -> Booking | None:
        """The booking whose configuration should be on the gateway at C{now}, if any."""
        for booking in await self._store.list_live(Slot(now, now + BOUNDARY_SLACK)):
            if (
                booking.allocation_state is AllocationState.PROVISIONED
                and booking.slot.contains(now)
                and booking.operational_state is not OperationalState.STOPPED
            ):
                return booking
        return None

    async def repair_locked(self) -> None:
        """Compare the gateway with the bookings and repair the difference."""
        if not self.online():
            self.log.debug("drift repair waits for the gateway agent")
            return
        try:
            observed = await self.observe()
        except GeniError as e:
            self.log.warn("cannot compare the gateway with the bookings: {error}", error=e.output)
            return
        target = await self._target(self._clock.seconds())
        if target is None:
            if not observed.empty:
                try:
                    await self.change("reset")
                except GeniError as e:
                    self.log.warn("drift repair could not reset the gateway: {error}", error=e.output)
                    return
                self.log.warn(
                    "drift repair: no slot runs, so the gateway was reset (it held {what})", what=observed.describe()
                )
            await self.mark_others_removed(None)
            return
        if target.operational_state is not OperationalState.READY:
            self.log.info("drift repair: applying {sliver}, whose slot runs now", sliver=target.sliver_urn)
            await self.start_locked(target.sliver_urn, manual=True, observed=observed)
            return
        try:
            repaired = await self.converge(target, observed)
        except GeniError as e:
            self.log.warn(
                "drift repair of {sliver} failed: {error} (the gateway held {what})",
                sliver=target.sliver_urn,
                error=e.output,
                what=observed.describe(),
            )
            await self.record_failure(target.sliver_urn, e)
            return
        if repaired:
            self.log.warn(
                "drift repair of {sliver}: {repairs} (the gateway held {what})",
                sliver=target.sliver_urn,
                repairs="; ".join(repaired),
                what=observed.describe(),
            )
        else:
            self.log.info("drift repair: the gateway matches {sliver}", sliver=target.sliver_urn)
        await self.mark_others_removed(target.sliver_key)
