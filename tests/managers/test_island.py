"""
Tests for L{geniam.managers.island}: the island resource manager on a
L{Clock}, an SQLite store run inline and the simulated gateway.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.agent.inprocess import InProcessGateway
from geniam.gateway.inventory import DEFAULT_LINKS, DEFAULT_SWITCHES
from geniam.booking.errors import BookingConflict
from geniam.booking.values import AllocationState, Booking, OperationalState, Slot, UserKeys
from geniam.managers.sliverstatus import geni_expires, geni_operational_status
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import ControllerPolicy
from geniam.interfaces import IResourceManager
from geniam.managers.island import ACTIONS, IslandResourceManager
from geniam.managers.inventory import KnownInventory
from geniam.store.errors import StoreError
from geniam.store.sqlite import SQLiteStore
from tests.store.test_contract import KEY_A, KEY_B, InlineReactor, InlineThreadPool, inline_sqlite_store

T0 = 1_800_000_000.0
HOUR = 3600.0
DAY = 24 * HOUR
AUTHORITY = "geni.example.net:island"
SLICE = "urn:publicid:IDN+geni.example.net+slice+exp1"
OTHER_SLICE = "urn:publicid:IDN+geni.example.net+slice+secret"
ALICE = "urn:publicid:IDN+geni.example.net+user+alice"
BOB = "urn:publicid:IDN+geni.example.net+user+bob"
CONTROLLER = "192.0.2.10:6633"
DOCUMENTATION_NETWORK = ControllerPolicy.allowing(["192.0.2.0/24"])
VLANS = {"10": "0xffff", "30": "20"}
USERS = (UserKeys(ALICE, (KEY_A,)),)
SWEEP = 600.0


def at(offset: float) -> float:
    """Return the time C{offset} seconds after the test epoch."""
    return T0 + offset


def advance_to(clock: Clock, target: float) -> None:
    """Move C{clock} to C{target}, running each delayed call at its own time rather than all at the end."""
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= target]
        if not due:
            break
        clock.advance(max(0.0, min(due) - clock.seconds()))
    clock.advance(target - clock.seconds())


def island_manager(store: Any, clock: Clock, sliver_names: Callable[[], str], **options: Any) -> IslandResourceManager:
    """An island resource manager on C{store} and C{clock} as these tests run it: one switch, a simulated gateway, the safety sweep every L{SWEEP} seconds, controllers in the documentation network."""
    options.setdefault("sweep_interval", SWEEP)
    options.setdefault("controller_policy", DOCUMENTATION_NETWORK)
    gateway = options.pop("gateway", None) or InProcessGateway()
    return IslandResourceManager(
        store, gateway, clock, AUTHORITY, switches=("00:00:00:00:00:00:00:99",), sliver_names=sliver_names, **options
    )


class Island:
    """A manager wired to a Clock, an inline SQLite store and a simulated gateway."""

    def __init__(self, case: SynchronousTestCase, path: str = ":memory:", clock: Clock | None = None, **options: Any) -> None:
        self.case = case
        self.clock = clock or Clock()
        if clock is None:
            self.clock.advance(T0)
        self.store = inline_sqlite_store(case, path)
        self.gateway = options.pop("gateway", None) or InProcessGateway()
        names = itertools.count(1)
        sliver_names = options.pop("sliver_names", lambda: f"s{next(names)}")
        self.manager = island_manager(self.store, self.clock, sliver_names, gateway=self.gateway, **options)

    def ok(self, d: Deferred[Any]) -> Any:
        return self.case.successResultOf(d)

    def error(self, d: Deferred[Any], code: GeniCode) -> GeniError:
        error = self.case.failureResultOf(d, GeniError).value
        self.case.assertEqual(error.code, code, error.output)
        return error

    def start(self) -> None:
        self.ok(self.manager.start())
        self.case.addCleanup(lambda: self.ok(self.manager.stop()))

    def allocate(self, start: float, end: float, slice_urn: str = SLICE, **kw: Any) -> Booking:
        kw.setdefault("credential_expires", at(30 * DAY))
        return self.ok(self.manager.allocate(slice_urn, ALICE, "alice@example.net", Slot(at(start), at(end)), **kw))

    def provisioned(self, start: float, end: float, slice_urn: str = SLICE, **kw: Any) -> Booking:
        b = self.allocate(start, end, slice_urn)
        kw.setdefault("users", USERS)
        kw.setdefault("controller", CONTROLLER)
        kw.setdefault("vlan_map", VLANS)
        [p] = self.ok(self.manager.provision([b.sliver_urn], **kw))
        return p

    def get(self, b: Booking) -> Booking:
        found = self.ok(self.store.get(b.sliver_urn))
        assert found is not None
        return found

    def advance_to(self, offset: float) -> None:
        """Move the clock to C{at(offset)}, stopping at every timer on the way as real time would."""
        advance_to(self.clock, at(offset))

    def ops(self) -> list[str]:
        return [name for name, _ in self.gateway.log]


class InterfaceTests(SynchronousTestCase):
    """The manager provides its interface and checks its configuration."""

    def test_interface(self) -> None:
        """IslandResourceManager provides IResourceManager."""
        self.assertTrue(verifyObject(IResourceManager, Island(self).manager))

    def test_bad_configuration(self) -> None:
        """A malformed authority or a non-positive interval is BADARGS."""
        store = SQLiteStore(":memory:")
        self.assertRaises(GeniError, IslandResourceManager, store, InProcessGateway(), Clock(), "bad authority")
        self.assertRaises(GeniError, IslandResourceManager, store, InProcessGateway(), Clock(), AUTHORITY, sweep_interval=0)

    def test_actions(self) -> None:
        """The supported actions are the four AM API ones."""
        self.assertEqual(set(ACTIONS), {"geni_start", "geni_stop", "geni_restart", "geni_update_users"})


class InventoryTests(SynchronousTestCase):
    """The island's switches and links."""

    def test_from_gateway(self) -> None:
        """The gateway's answer replaces the configured inventory and is dated."""
        island = Island(self)
        inventory = island.ok(island.manager.inventory())
        self.assertEqual(inventory, KnownInventory(DEFAULT_SWITCHES, DEFAULT_LINKS, at(0)))

    def test_gateway_down(self) -> None:
        """With the gateway unreachable the configured inventory is used."""
        island = Island(self)
        island.gateway.set_reachable(False)
        inventory = island.ok(island.manager.inventory())
        self.assertEqual(inventory, KnownInventory(("00:00:00:00:00:00:00:99",), (), None))

    def test_cached_then_refreshed(self) -> None:
        """The gateway is asked again only after the inventory TTL; a failed refresh keeps the last answer."""
        island = Island(self, inventory_ttl=100)
        island.ok(island.manager.inventory())
        island.gateway.backend.break_switch(DEFAULT_SWITCHES[0])
        self.assertEqual(island.ok(island.manager.inventory()).switches, DEFAULT_SWITCHES)
        island.clock.advance(100)
        self.assertEqual(island.ok(island.manager.inventory()).switches, DEFAULT_SWITCHES[1:])
        island.gateway.set_reachable(False)
        island.clock.advance(100)
        self.assertEqual(island.ok(island.manager.inventory()).switches, DEFAULT_SWITCHES[1:])
        self.assertEqual(island.gateway.calls.count("get_switches"), 3)

    def test_booked_slots(self) -> None:
        """The advertisement sees live slots only, by start, without their slices."""
        island = Island(self)
        island.allocate(300, 400, OTHER_SLICE)
        island.provisioned(100, 200)
        gone = island.allocate(500, 600)
        island.ok(island.manager.delete([gone.sliver_urn]))
        slots = island.ok(island.manager.booked_slots(Slot(at(0), at(1000))))
        self.assertEqual(slots, [Slot(at(100), at(200)), Slot(at(300), at(400))])
        self.assertTrue(all(isinstance(s, Slot) for s in slots))

    def test_check_availability(self) -> None:
        """A slot is available unless a live booking overlaps it."""
        island = Island(self)
        island.allocate(100, 200)
        self.assertFalse(island.ok(island.manager.check_availability(Slot(at(150), at(250)))))
        self.assertTrue(island.ok(island.manager.check_availability(Slot(at(200), at(250)))))
        island.error(island.manager.check_availability((1, 2)), GeniCode.BADARGS)  # type: ignore[arg-type]


class AllocateTests(SynchronousTestCase):
    """Allocate books the island for a slot."""

    def test_allocate(self) -> None:
        """A new allocation is allocated, pending, with an AM-issued sliver URN and its own expiry."""
        island = Island(self, allocation_ttl=HOUR)
        b = island.allocate(2 * HOUR, 3 * HOUR, controller=CONTROLLER, vlan_map=VLANS)
        self.assertEqual(b.sliver_urn, f"urn:publicid:IDN+{AUTHORITY}+sliver+s1")
        self.assertEqual(b.allocation_state, AllocationState.ALLOCATED)
        self.assertEqual(geni_operational_status(b), "geni_pending_allocation")
        self.assertEqual(b.allocation_expires, at(HOUR))
        self.assertEqual((b.controller, b.vlan_map, b.owner_urn, b.version), (CONTROLLER, VLANS, ALICE, 1))
        self.assertEqual(island.gateway.log, [])

    def test_controller_policy(self) -> None:
        """
        By default only public controller addresses are booked; a private,
        loopback or named controller is REFUSED naming the rule, at Allocate
        and at Provision, and nothing is booked.
        """
        island = Island(self, controller_policy=ControllerPolicy())
        b = island.allocate(2 * HOUR, 3 * HOUR, controller="[2001:4860:0:0::8888]:6653")
        self.assertEqual(b.controller, "[2001:4860::8888]:6653")
        for controller, words in (
            ("10.0.0.1:6633", "not a public address"),
            ("127.0.0.1:6633", "not a public address"),
            ("[fe80::1%eth0]:6633", "not a public address"),
            ("224.0.0.1:6633", "not a public address"),
            ("ctl.example.org:6633", "host names are not accepted"),
        ):
            d = island.manager.allocate(SLICE, ALICE, "", Slot(at(5 * HOUR), at(6 * HOUR)), at(DAY), controller=controller)
            self.assertIn(words, island.error(d, GeniCode.REFUSED).output)
            d = island.manager.provision([b.sliver_urn], USERS, controller=controller)
            self.assertIn("public IP addresses", island.error(d, GeniCode.REFUSED).output)
        [kept] = island.ok(island.manager.slice_bookings(SLICE))
        self.assertEqual((kept.sliver_urn, kept.controller), (b.sliver_urn, b.controller))

    def test_expiry_bounded(self) -> None:
        """The allocation lapses after the TTL, or at the slot's end if that is sooner."""
        island = Island(self, allocation_ttl=HOUR)
        self.assertEqual(island.allocate(10, 3 * HOUR, credential_expires=at(3 * HOUR)).allocation_expires, at(HOUR))
        self.assertEqual(island.allocate(4 * HOUR, 5 * HOUR).allocation_expires, at(HOUR))
        self.assertEqual(island.allocate(6 * HOUR, 6 * HOUR + 1800).allocation_expires, at(HOUR))
        island.clock.advance(5.5 * HOUR)
        self.assertEqual(island.allocate(5.5 * HOUR + 10, 5.5 * HOUR + 600).allocation_expires, at(5.5 * HOUR + 600))

    def test_conflict(self) -> None:
        """An overlapping slot is UNAVAILABLE, naming the booked window and not the other slice."""
        island = Island(self)
        island.allocate(100, 200, OTHER_SLICE)
        d = island.manager.allocate(SLICE, ALICE, "", Slot(at(150), at(250)), at(DAY))
        error = island.error(d, GeniCode.UNAVAILABLE)
        self.assertIsInstance(error.cause, BookingConflict)
        self.assertIn(str(Slot(at(100), at(200))), error.output)
        self.assertNotIn("secret", error.output)

    def test_disjoint_slots_one_slice(self) -> None:
        """One slice may hold several disjoint slots, back to back included."""
        island = Island(self)
        island.allocate(100, 200)
        island.allocate(200, 300)
        self.assertEqual(len(island.ok(island.manager.slice_bookings(SLICE))), 2)

    def test_bad_arguments(self) -> None:
        """Malformed arguments are BADARGS; slots out of policy are OUTOFRANGE."""
        island = Island(self, max_slot_length=HOUR)
        m = island.manager
        slot = Slot(at(100), at(200))
        island.error(m.allocate("urn:publicid:IDN+x+user+y", ALICE, "", slot, None), GeniCode.BADARGS)
        island.error(m.allocate(SLICE, SLICE, "", slot, None), GeniCode.BADARGS)
        island.error(m.allocate(SLICE, ALICE, "a b", slot, None), GeniCode.BADARGS)
        island.error(m.allocate(SLICE, ALICE, "", (1, 2), None), GeniCode.BADARGS)  # type: ignore[arg-type]
        island.error(m.allocate(SLICE, ALICE, "", slot, "soon"), GeniCode.BADARGS)  # type: ignore[arg-type]
        island.error(m.allocate(SLICE, ALICE, "", slot, None, controller="nohost"), GeniCode.BADARGS)
        island.error(m.allocate(SLICE, ALICE, "", Slot(at(-200), at(-100)), None), GeniCode.OUTOFRANGE)
        island.error(m.allocate(SLICE, ALICE, "", Slot(at(0), at(2 * HOUR)), None), GeniCode.REFUSED)  # the booking policy names the limit
        island.error(m.allocate(SLICE, ALICE, "", slot, at(150)), GeniCode.OUTOFRANGE)
        self.assertEqual(island.ok(island.store.count()), 0)


class ExpiryTests(SynchronousTestCase):
    """Unprovisioned allocations lapse at their expiry."""

    def test_allocation_expires(self) -> None:
        """An allocation not provisioned in time expires within a second, freeing the slot."""
        island = Island(self, allocation_ttl=HOUR)
        island.start()
        b = island.allocate(2 * HOUR, 3 * HOUR)
        island.advance_to(HOUR - 0.5)
        self.assertEqual(island.get(b).allocation_state, AllocationState.ALLOCATED)
        island.clock.advance(1)
        self.assertEqual(island.get(b).allocation_state, AllocationState.EXPIRED)
        island.error(island.manager.lookup([b.sliver_urn]), GeniCode.SEARCHFAILED)
        island.error(island.manager.provision([b.sliver_urn]), GeniCode.SEARCHFAILED)
        self.assertTrue(island.ok(island.manager.check_availability(b.slot)))

    def test_provisioned_does_not_expire(self) -> None:
        """A provisioned booking outlives its allocation expiry."""
        island = Island(self, allocation_ttl=HOUR)
        island.start()
        b = island.provisioned(2 * HOUR, 3 * HOUR)
        island.advance_to(HOUR + 10)
        self.assertEqual(island.get(b).allocation_state, AllocationState.PROVISIONED)
        self.assertEqual(geni_expires(island.get(b)), at(3 * HOUR))

    def test_lapsed_before_check(self) -> None:
        """An allocation past its expiry cannot be provisioned even before the check has run."""
        island = Island(self, allocation_ttl=HOUR)
        b = island.allocate(2 * HOUR, 3 * HOUR)
        island.advance_to(HOUR)
        island.error(island.manager.provision([b.sliver_urn]), GeniCode.SEARCHFAILED)


class SlotTests(SynchronousTestCase):
    """Slots start and end on the gateway at their boundaries."""

    def test_start_and_end(self) -> None:
        """Configuration is applied within a second of the start and removed within a second of the end."""
        island = Island(self)
        island.start()
        b = island.provisioned(1000, 2000)
        self.assertEqual(geni_operational_status(b), "geni_notready")
        island.advance_to(999.5)
        self.assertEqual(island.gateway.log, [])
        island.clock.advance(1)
        self.assertEqual(
            island.gateway.log,
            [("set_user_auth", (KEY_A,)), ("set_tcp_proxy", CONTROLLER), ("set_ovs", VLANS)],
        )
        started = island.get(b)
        self.assertEqual((started.operational_state, started.applied), (OperationalState.READY, True))
        self.assertEqual(island.ok(island.gateway.state()), {"users": [KEY_A], "proxy": CONTROLLER, "vlans": VLANS})
        island.advance_to(1999.5)
        self.assertEqual(len(island.gateway.log), 3)
        island.clock.advance(1)
        self.assertEqual(island.ops()[3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])
        ended = island.get(b)
        self.assertEqual((ended.allocation_state, ended.applied), (AllocationState.ENDED, False))
        self.assertEqual(island.ok(island.gateway.state()), {"users": [], "proxy": "", "vlans": {}})
        self.assertTrue(island.ok(island.manager.check_availability(b.slot)))

    def test_minimal_configuration(self) -> None:
        """A booking without keys, controller or VLANs becomes ready without gateway calls."""
        island = Island(self)
        island.start()
        b = island.provisioned(10, 20, users=[], controller="", vlan_map={})
        island.advance_to(10.5)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.gateway.log, [])

    def test_back_to_back(self) -> None:
        """At a shared boundary the ending slot is removed before the next is applied."""
        island = Island(self)
        island.start()
        island.provisioned(100, 200, controller="192.0.2.1:1")
        island.provisioned(200, 300, OTHER_SLICE, users=[UserKeys(BOB, (KEY_B,))], controller="192.0.2.2:2", vlan_map={})
        island.advance_to(200.5)
        self.assertEqual(
            island.ops(),
            ["set_user_auth", "set_tcp_proxy", "set_ovs", "rem_user_auth", "rem_tcp_proxy", "rem_ovs", "set_user_auth", "set_tcp_proxy"],
        )
        self.assertEqual(island.ok(island.gateway.state()), {"users": [KEY_B], "proxy": "192.0.2.2:2", "vlans": {}})

    def test_provision_during_slot(self) -> None:
        """A booking provisioned after its slot began is applied at once."""
        island = Island(self)
        island.start()
        b = island.allocate(10, 1000)
        island.advance_to(20)
        island.ok(island.manager.provision([b.sliver_urn], users=USERS))
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.gateway.users, [KEY_A])

    def test_failure_then_retry(self) -> None:
        """
        A refused start leaves the booking failed with the error, and a retry
        later makes it ready, applying only what the gateway still lacks.
        """
        island = Island(self, retry_delay=10)
        island.start()
        b = island.provisioned(100, 1000)
        island.gateway.fail_next(1, "proxy daemon not running", code=GeniCode.REFUSED, methods=["set_tcp_proxy"])
        island.advance_to(100.5)
        failed = island.get(b)
        self.assertEqual(geni_operational_status(failed), "geni_failed")
        self.assertIn("proxy daemon not running", failed.error)
        self.assertTrue(failed.applied)
        island.advance_to(109)
        self.assertEqual(island.get(b).operational_state, OperationalState.FAILED)
        island.advance_to(111)
        ready = island.get(b)
        self.assertEqual((ready.operational_state, ready.error), (OperationalState.READY, ""))
        self.assertEqual(island.ops(), ["set_user_auth", "set_tcp_proxy", "set_ovs"])
        self.assertEqual(island.ok(island.gateway.state()), {"users": [KEY_A], "proxy": CONTROLLER, "vlans": VLANS})

    def test_retry_backs_off_while_slot_lasts(self) -> None:
        """
        While the gateway is unreachable the booking shows configuring with
        the reason, is retried with doubling delays up to the maximum while
        the slot lasts, and is never marked applied or ready.
        """
        island = Island(self, retry_delay=10, max_retry_delay=40)
        island.start()
        b = island.provisioned(100, 300)
        island.gateway.set_reachable(False)
        del island.gateway.calls[:]
        attempts: list[int] = []
        for moment in range(100, 300):
            island.advance_to(moment + 0.5)
            if len(attempts) < island.gateway.calls.count("state"):
                attempts.append(moment)
            if moment == 100:
                waiting = island.get(b)
                self.assertEqual(geni_operational_status(waiting), "geni_configuring")
                self.assertIn("gateway unreachable", waiting.error)
                self.assertFalse(waiting.applied)
        self.assertEqual(attempts, [100, 110, 130, 170, 210, 250, 290])
        self.assertEqual([c for c in island.gateway.calls if c != "state"], [])
        island.advance_to(301)
        ended = island.get(b)
        self.assertEqual((ended.allocation_state, ended.applied), (AllocationState.ENDED, False))
        self.assertIn("unreachable", ended.error)
        island.gateway.set_reachable(True)
        island.advance_to(301 + SWEEP)
        self.assertEqual(island.gateway.log, [])

    def test_timeout(self) -> None:
        """A gateway that does not answer within the gateway timeout counts as unreachable: configuring, with the reason."""
        clock = Clock()
        clock.advance(T0)
        slow = InProcessGateway(clock=clock, latency=60)
        island = Island(self, clock=clock, gateway=slow, gateway_timeout=5, retry_delay=1000)
        island.start()
        island.advance_to(5)
        b = island.provisioned(100, 1000)
        island.advance_to(100.5)
        self.assertEqual(island.get(b).operational_state, OperationalState.NOTREADY)
        island.advance_to(106)
        waiting = island.get(b)
        self.assertEqual((waiting.operational_state, waiting.applied), (OperationalState.CONFIGURING, False))
        self.assertIn("did not answer state within 5 s", waiting.error)


class ChangeTests(SynchronousTestCase):
    """Provision updates, Renew and Delete."""

    def test_provision_other_slot_refused(self) -> None:
        """First provision only approves the allocated slot."""
        island = Island(self)
        b = island.allocate(100, 200)
        island.error(island.manager.provision([b.sliver_urn], slot=Slot(at(100), at(300))), GeniCode.REFUSED)
        [p] = island.ok(island.manager.provision([b], slot=b.slot, users=USERS))
        self.assertEqual(p.allocation_state, AllocationState.PROVISIONED)

    def test_provision_validation(self) -> None:
        """A malformed controller or sliver list is BADARGS and changes nothing (users and VLAN maps are checked where the request enters)."""
        island = Island(self)
        b = island.allocate(100, 200)
        island.error(island.manager.provision([b.sliver_urn], controller="1.2.3.4:0"), GeniCode.BADARGS)
        island.error(island.manager.provision("not a list"), GeniCode.BADARGS)  # type: ignore[arg-type]
        island.error(island.manager.provision([SLICE]), GeniCode.BADARGS)
        island.error(island.manager.provision([]), GeniCode.BADARGS)
        self.assertEqual(island.get(b).version, 1)

    def test_provision_all_or_nothing(self) -> None:
        """If one sliver cannot be provisioned, none is."""
        island = Island(self)
        a = island.allocate(100, 200)
        b = island.allocate(300, 400)
        island.ok(island.manager.delete([b.sliver_urn]))
        island.error(island.manager.provision([a.sliver_urn, b.sliver_urn]), GeniCode.SEARCHFAILED)
        self.assertEqual(island.get(a).allocation_state, AllocationState.ALLOCATED)

    def test_update_slot(self) -> None:
        """A provisioned booking may move to a free slot, not onto another booking."""
        island = Island(self)
        b = island.provisioned(100, 200)
        island.allocate(500, 600, OTHER_SLICE)
        [moved] = island.ok(island.manager.provision([b.sliver_urn], slot=Slot(at(300), at(450))))
        self.assertEqual(moved.slot, Slot(at(300), at(450)))
        island.error(island.manager.provision([b.sliver_urn], slot=Slot(at(400), at(550))), GeniCode.UNAVAILABLE)
        self.assertEqual(island.get(b).slot, Slot(at(300), at(450)))
        self.assertTrue(island.ok(island.manager.check_availability(Slot(at(100), at(200)))))

    def test_update_running(self) -> None:
        """Updating a started booking pushes only the changes to the gateway at once."""
        island = Island(self)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        del island.gateway.log[:]
        [updated] = island.ok(
            island.manager.provision([b.sliver_urn], users=[UserKeys(BOB, (KEY_B,))], controller="192.0.2.99:6653")
        )
        self.assertEqual(updated.operational_state, OperationalState.READY)
        self.assertEqual(
            island.gateway.log,
            [("rem_user_auth", (KEY_A,)), ("set_user_auth", (KEY_B,)), ("set_tcp_proxy", "192.0.2.99:6653")],
        )
        self.assertEqual(island.ok(island.gateway.state()), {"users": [KEY_B], "proxy": "192.0.2.99:6653", "vlans": VLANS})
        island.error(island.manager.provision([b.sliver_urn], slot=Slot(at(200), at(1000))), GeniCode.REFUSED)
        [longer] = island.ok(island.manager.provision([b.sliver_urn], slot=Slot(at(100), at(2000))))
        self.assertEqual(longer.slot.end, at(2000))

    def test_update_running_fails(self) -> None:
        """A refused update leaves the booking failed, and the retry applies the whole new configuration."""
        island = Island(self, retry_delay=5)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        island.gateway.fail_next(1, "ovs busy", code=GeniCode.REFUSED, methods=["set_ovs"])
        [failed] = island.ok(island.manager.provision([b.sliver_urn], vlan_map={"7": "8"}))
        self.assertEqual(failed.operational_state, OperationalState.FAILED)
        self.assertIn("ovs busy", failed.error)
        island.advance_to(156)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.gateway.vlans, {"7": "8"})

    def test_renew(self) -> None:
        """Renew moves the slot's end; the slot then ends at the new time."""
        island = Island(self)
        island.start()
        b = island.provisioned(100, 200)
        [r] = island.ok(island.manager.renew([b.sliver_urn], at(400), at(DAY)))
        self.assertEqual((r.slot.end, geni_expires(r)), (at(400), at(400)))
        island.advance_to(250)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        island.advance_to(400.5)
        self.assertEqual(island.get(b).allocation_state, AllocationState.ENDED)

    def test_renew_allocation(self) -> None:
        """Renewing an allocation also renews its hold from now."""
        island = Island(self, allocation_ttl=HOUR)
        b = island.allocate(10 * HOUR, 11 * HOUR)
        island.advance_to(HOUR / 2)
        [r] = island.ok(island.manager.renew([b.sliver_urn], at(12 * HOUR)))
        self.assertEqual((r.slot.end, r.allocation_expires), (at(12 * HOUR), at(1.5 * HOUR)))

    def test_renew_conflict(self) -> None:
        """Renewing into another booking is UNAVAILABLE and changes nothing; as late as possible stops before it."""
        island = Island(self)
        b = island.provisioned(100, 200)
        island.allocate(300, 400, OTHER_SLICE)
        error = island.error(island.manager.renew([b.sliver_urn], at(350)), GeniCode.UNAVAILABLE)
        self.assertIn(str(Slot(at(300), at(400))), error.output)
        self.assertEqual(island.get(b).slot.end, at(200))
        [r] = island.ok(island.manager.renew([b.sliver_urn], at(350), extend_alap=True))
        self.assertEqual(r.slot.end, at(300))

    def test_renew_limits(self) -> None:
        """Past the credential or before now is OUTOFRANGE; unknown slivers are SEARCHFAILED."""
        island = Island(self)
        b = island.provisioned(100, 200)
        island.error(island.manager.renew([b.sliver_urn], at(500), at(400)), GeniCode.OUTOFRANGE)
        [r] = island.ok(island.manager.renew([b.sliver_urn], at(500), at(400), extend_alap=True))
        self.assertEqual(r.slot.end, at(400))
        island.error(island.manager.renew([b.sliver_urn], at(-10)), GeniCode.OUTOFRANGE)
        island.error(island.manager.renew([f"urn:publicid:IDN+{AUTHORITY}+sliver+nope"], at(500)), GeniCode.SEARCHFAILED)
        island.error(island.manager.renew([b.sliver_urn], "tomorrow"), GeniCode.BADARGS)  # type: ignore[arg-type]

    def test_delete_allocated(self) -> None:
        """Deleting an allocation frees the slot without touching the gateway."""
        island = Island(self)
        b = island.allocate(100, 200)
        [d] = island.ok(island.manager.delete([b.sliver_urn]))
        self.assertEqual(d.allocation_state, AllocationState.DELETED)
        self.assertEqual(island.gateway.calls, [])
        island.error(island.manager.delete([b.sliver_urn]), GeniCode.SEARCHFAILED)
        self.assertEqual(island.ok(island.manager.lookup([b.sliver_urn], include_dead=True)), [d])

    def test_delete_started(self) -> None:
        """Deleting a started slot removes its configuration from the gateway first."""
        island = Island(self)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        [d] = island.ok(island.manager.delete([b.sliver_urn]))
        self.assertEqual((d.allocation_state, d.applied), (AllocationState.DELETED, False))
        self.assertEqual(island.ops()[-3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])
        self.assertEqual(island.ok(island.gateway.state()), {"users": [], "proxy": "", "vlans": {}})
        island.advance_to(2000)
        self.assertEqual(island.ops()[-3:], ["rem_user_auth", "rem_tcp_proxy", "rem_ovs"])

    def test_delete_gateway_down(self) -> None:
        """If the gateway cannot be reset the booking is deleted anyway, and the removal is retried."""
        island = Island(self, retry_delay=10)
        island.start()
        b = island.provisioned(100, 1000)
        island.advance_to(150)
        island.gateway.set_reachable(False)
        [d] = island.ok(island.manager.delete([b.sliver_urn]))
        self.assertEqual((d.allocation_state, d.applied), (AllocationState.DELETED, True))
        self.assertIn("could not remove", d.error)
        island.gateway.set_reachable(True)
        island.advance_to(161)
        self.assertFalse(island.get(b).applied)
        self.assertEqual(island.gateway.users, [])


class ShutdownTests(SynchronousTestCase):
    """Shutdown stops a slice at once and locks it."""

    def test_shutdown(self) -> None:
        """Configuration is removed now, the slot does not restart, changes are REFUSED, the booking is kept."""
        island = Island(self)
        island.start()
        b = island.provisioned(100, 1000)
        later = island.allocate(2000, 3000)
        island.advance_to(150)
        result = island.ok(island.manager.shutdown(SLICE))
        self.assertEqual([x.sliver_urn for x in result], [b.sliver_urn, later.sliver_urn])
        self.assertEqual((result[0].operational_state, result[0].applied), (OperationalState.STOPPED, False))
        self.assertEqual(island.ok(island.gateway.state()), {"users": [], "proxy": "", "vlans": {}})
        self.assertTrue(island.ok(island.manager.is_shut_down(SLICE)))
        m = island.manager
        for d in (
            m.provision([b.sliver_urn]),
            m.renew([b.sliver_urn], at(1500)),
            m.delete([later.sliver_urn]),
            m.perform_action([b.sliver_urn], "geni_start"),
            m.allocate(SLICE, ALICE, "", Slot(at(5000), at(6000)), None),
        ):
            island.error(d, GeniCode.REFUSED)
        island.advance_to(500)
        self.assertEqual(island.gateway.users, [])
        self.assertEqual(len(island.ok(island.manager.shutdown(SLICE))), 2)
        island.advance_to(1000.5)
        self.assertEqual(island.get(b).allocation_state, AllocationState.ENDED)

    def test_shutdown_empty(self) -> None:
        """Shutting down a slice with nothing here succeeds with no bookings."""
        island = Island(self)
        self.assertEqual(island.ok(island.manager.shutdown(SLICE)), [])
        island.error(island.manager.shutdown("urn:publicid:IDN+x+user+y"), GeniCode.BADARGS)


class ActionTests(SynchronousTestCase):
    """Operational actions."""

    def started(self, **options: Any) -> tuple[Island, Booking]:
        island = Island(self, **options)
        island.start()
        b = island.provisioned(100, 10 * SWEEP)
        island.advance_to(150)
        return island, b

    def test_stop_and_start(self) -> None:
        """geni_stop removes the configuration and keeps it off; geni_start applies it again."""
        island, b = self.started()
        [stopped] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_stop"))
        self.assertEqual((stopped.operational_state, stopped.applied), (OperationalState.STOPPED, False))
        self.assertEqual(geni_operational_status(stopped), "geni_notready")
        island.advance_to(150 + 2 * SWEEP)
        self.assertEqual(island.gateway.users, [])
        [started] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_start"))
        self.assertEqual(started.operational_state, OperationalState.READY)
        self.assertEqual(island.gateway.users, [KEY_A])
        [again] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_start"))
        self.assertEqual(again.version, started.version)

    def test_restart(self) -> None:
        """geni_restart resets the gateway and applies the configuration again."""
        island, b = self.started()
        del island.gateway.log[:]
        [r] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_restart"))
        self.assertEqual(r.operational_state, OperationalState.READY)
        self.assertEqual(island.ops(), ["reset", "set_user_auth", "set_tcp_proxy", "set_ovs"])

    def test_update_users(self) -> None:
        """geni_update_users adds new users, replaces listed users' keys and pushes the keys."""
        island, b = self.started()
        [u] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_update_users", users=[UserKeys(BOB, (KEY_B,))]))
        self.assertEqual([x.urn for x in u.users], [ALICE, BOB])
        self.assertEqual(island.gateway.users, [KEY_A, KEY_B])
        [u] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_update_users", users=[UserKeys(ALICE, ())]))
        self.assertEqual(island.gateway.users, [KEY_B])
        island.error(island.manager.perform_action([b.sliver_urn], "geni_update_users"), GeniCode.BADARGS)

    def test_refusals(self) -> None:
        """Unknown actions and allocated slivers are UNSUPPORTED; wrong states are REFUSED."""
        island = Island(self)
        island.start()
        a = island.allocate(5000, 6000)
        p = island.provisioned(2000, 3000)
        m = island.manager
        island.error(m.perform_action([p.sliver_urn], "geni_dance"), GeniCode.UNSUPPORTED)
        island.error(m.perform_action([a.sliver_urn], "geni_start"), GeniCode.UNSUPPORTED)
        island.error(m.perform_action([a.sliver_urn], "geni_update_users", users=USERS), GeniCode.REFUSED)
        island.error(m.perform_action([p.sliver_urn], "geni_update_users", users=USERS), GeniCode.REFUSED)

    def test_restart_before_slot(self) -> None:
        """Before the slot geni_restart clears a stop as geni_start does; the slot start applies the configuration."""
        island = Island(self)
        island.start()
        b = island.provisioned(1000, 2000)
        island.ok(island.manager.perform_action([b.sliver_urn], "geni_stop"))
        [back] = island.ok(island.manager.perform_action([b.sliver_urn], "geni_restart"))
        self.assertEqual(back.operational_state, OperationalState.NOTREADY)
        self.assertEqual(island.gateway.log, [])
        island.advance_to(1001)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(island.gateway.users, [KEY_A])

    def test_restart_after_slot(self) -> None:
        """A restart once the slot is over finds nothing to restart, even before the sweep has ended the booking."""
        island = Island(self)
        b = island.provisioned(100, 200)
        island.clock.advance(at(300) - island.clock.seconds())
        error = island.error(island.manager.perform_action([b.sliver_urn], "geni_restart"), GeniCode.SEARCHFAILED)
        self.assertIn("has ended", error.output)

    def test_stop_before_slot(self) -> None:
        """A booking stopped before its slot does not start; geni_start before the slot lets it start."""
        island = Island(self)
        island.start()
        b = island.provisioned(1000, 2000)
        island.ok(island.manager.perform_action([b.sliver_urn], "geni_stop"))
        island.advance_to(1001)
        self.assertEqual(island.gateway.log, [])
        b2 = island.provisioned(3000, 4000)
        island.ok(island.manager.perform_action([b2.sliver_urn], "geni_stop"))
        [back] = island.ok(island.manager.perform_action([b2.sliver_urn], "geni_start"))
        self.assertEqual(back.operational_state, OperationalState.NOTREADY)
        island.advance_to(3001)
        self.assertEqual(island.get(b2).operational_state, OperationalState.READY)


class LookupTests(SynchronousTestCase):
    """Lookups by sliver and slice."""

    def test_lookup(self) -> None:
        """Bookings come in the order asked, duplicates once; unknown or malformed URNs fail."""
        island = Island(self)
        a = island.allocate(100, 200)
        b = island.allocate(300, 400)
        found = island.ok(island.manager.lookup([b.sliver_urn, a.sliver_urn, b.sliver_urn.replace(AUTHORITY, AUTHORITY.upper())]))
        self.assertEqual([x.sliver_urn for x in found], [b.sliver_urn, a.sliver_urn])
        island.error(island.manager.lookup([f"urn:publicid:IDN+{AUTHORITY}+sliver+zz"]), GeniCode.SEARCHFAILED)
        island.error(island.manager.lookup(["junk"]), GeniCode.BADARGS)

    def test_slice_bookings(self) -> None:
        """A slice's bookings, live only by default."""
        island = Island(self)
        a = island.allocate(100, 200)
        island.allocate(300, 400, OTHER_SLICE)
        island.ok(island.manager.delete([a.sliver_urn]))
        self.assertEqual(island.ok(island.manager.slice_bookings(SLICE)), [])
        self.assertEqual(len(island.ok(island.manager.slice_bookings(SLICE, live_only=False))), 1)
        island.error(island.manager.slice_bookings("nope"), GeniCode.BADARGS)


class _FlakyStore:
    """Wraps a store and fails the next calls to due()."""

    def __init__(self, store: SQLiteStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def due(self, now: float, limit: int = 500) -> Deferred[Any]:
        if self.failures:
            self.failures -= 1
            return fail(StoreError("disk on fire"))
        return self._store.due(now, limit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class LifecycleTests(SynchronousTestCase):
    """Starting, stopping and surviving errors and restarts."""

    def test_restart_catch_up(self) -> None:
        """
        A new manager on the same database ends slots that ended while it
        was down without touching the gateway, and applies slots in progress.
        """
        path = self.mktemp()
        first = Island(self, path)
        first.start()
        over = first.provisioned(100, 200)
        running = first.provisioned(300, 1000, OTHER_SLICE)
        lapsed = first.allocate(2000, 3000)
        first.ok(first.manager.stop())
        gateway = InProcessGateway()
        store = SQLiteStore(path, reactor=InlineReactor(), threadpool=InlineThreadPool())
        second_clock = Clock()
        second_clock.advance(at(500))
        second = IslandResourceManager(store, gateway, second_clock, AUTHORITY, sweep_interval=SWEEP, allocation_ttl=HOUR)
        self.successResultOf(store.start())
        self.successResultOf(second.start())
        self.addCleanup(lambda: self.successResultOf(store.stop()))
        self.addCleanup(lambda: self.successResultOf(second.stop()))
        states = {b.sliver_urn: b for b in self.successResultOf(second.lookup([over, running, lapsed], include_dead=True))}
        self.assertEqual(states[over.sliver_urn].allocation_state, AllocationState.ENDED)
        self.assertEqual(states[running.sliver_urn].operational_state, OperationalState.READY)
        self.assertEqual(states[lapsed.sliver_urn].allocation_state, AllocationState.ALLOCATED)
        self.assertEqual([name for name, _ in gateway.log], ["set_user_auth", "set_tcp_proxy", "set_ovs"])

    def test_interrupted_configuring(self) -> None:
        """
        A booking left configuring by a crash is applied again on the next
        start; what the crash left half done (a stray key, a wrong proxy) is replaced.
        """
        path = self.mktemp()
        first = Island(self, path)
        b = first.provisioned(100, 1000)
        current = first.get(b)
        first.ok(first.store.update([replace(current, operational_state=OperationalState.CONFIGURING, applied=True)]))
        first.ok(first.gateway.set_user_auth([KEY_B]))
        first.ok(first.gateway.set_tcp_proxy("192.0.2.77:1"))
        del first.gateway.log[:]
        first.advance_to(150)
        first.start()
        self.assertEqual(first.get(b).operational_state, OperationalState.READY)
        self.assertEqual(first.ops(), ["rem_user_auth", "set_user_auth", "set_tcp_proxy", "set_ovs"])
        self.assertEqual(first.ok(first.gateway.state()), {"users": [KEY_A], "proxy": CONTROLLER, "vlans": VLANS})

    def test_sweep_survives_errors(self) -> None:
        """A database error in the periodic check logs no traceback (the store reports outages) and the next check still runs."""
        island = Island(self)
        flaky = _FlakyStore(island.store, 1)
        manager = IslandResourceManager(flaky, island.gateway, island.clock, AUTHORITY, sweep_interval=SWEEP)  # type: ignore[arg-type]
        self.successResultOf(manager.start())
        self.addCleanup(lambda: self.successResultOf(manager.stop()))
        self.assertEqual(self.flushLoggedErrors(StoreError), [])
        b = self.successResultOf(manager.allocate(SLICE, ALICE, "", Slot(at(10 * DAY), at(10 * DAY + 1)), None))
        self.successResultOf(manager.provision([b.sliver_urn]))
        island.advance_to(10 * DAY + 0.5)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)

    def test_safety_sweep(self) -> None:
        """Without a boundary timer (a booking written by another process) the periodic sweep still starts the slot."""
        island = Island(self)
        island.start()
        other = IslandResourceManager(island.store, island.gateway, island.clock, AUTHORITY, sliver_names=lambda: "x1")
        b = self.successResultOf(other.allocate(SLICE, ALICE, "", Slot(at(100), at(5000)), None))
        self.successResultOf(other.provision([b.sliver_urn]))
        island.advance_to(SWEEP - 1)
        self.assertEqual(island.get(b).operational_state, OperationalState.NOTREADY)
        island.advance_to(SWEEP + 1)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)

    def test_stop_waits(self) -> None:
        """stop() fires only once gateway work in flight is done, and no timer is left."""
        clock = Clock()
        clock.advance(T0)
        slow = InProcessGateway(clock=clock, latency=3)
        island = Island(self, clock=clock, gateway=slow)
        self.successResultOf(island.manager.start())
        island.advance_to(3)
        b = island.provisioned(100, 1000)
        island.advance_to(103.5)
        self.assertEqual(island.get(b).operational_state, OperationalState.CONFIGURING)
        stopping = island.manager.stop()
        self.assertNoResult(stopping)
        island.advance_to(115)
        self.successResultOf(stopping)
        self.assertEqual(island.get(b).operational_state, OperationalState.READY)
        self.assertEqual(clock.getDelayedCalls(), [])


_actions = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), st.integers(0, 40), st.integers(1, 12), st.booleans()),
        st.tuples(st.just("provision"), st.integers(0, 20), st.one_of(st.none(), st.tuples(st.integers(0, 40), st.integers(1, 12)))),
        st.tuples(st.just("renew"), st.integers(0, 20), st.integers(-5, 60), st.booleans()),
        st.tuples(st.just("delete"), st.integers(0, 20)),
        st.tuples(st.just("wait"), st.integers(0, 6)),
    ),
    max_size=30,
)


class ManagerPropertyTests(SynchronousTestCase):
    """Properties of the manager over any sequence of operations."""

    @given(_actions)
    def test_live_bookings_never_overlap(self, actions: list[tuple]) -> None:
        """
        After any sequence of allocate/provision/renew/delete and time
        passing, no two live bookings overlap, every failure is an expected
        GeniError, and the gateway holds at most the current slot's keys.
        """
        unit = 100.0
        island = Island(self, allocation_ttl=3 * unit)
        island.start()
        made: list[str] = []
        expected = {GeniCode.UNAVAILABLE, GeniCode.OUTOFRANGE, GeniCode.SEARCHFAILED, GeniCode.REFUSED}
        for action in actions:
            kind = action[0]
            d: Deferred[Any] | None = None
            if kind == "allocate":
                slice_urn = SLICE if action[3] else OTHER_SLICE
                now = island.clock.seconds()
                slot = Slot(now + action[1] * unit, now + (action[1] + action[2]) * unit)
                d = island.manager.allocate(slice_urn, ALICE, "", slot, None)
            elif kind == "wait":
                island.clock.advance(action[1] * unit)
            elif made:
                urn = made[action[1] % len(made)]
                if kind == "provision":
                    now = island.clock.seconds()
                    moved = None if action[2] is None else Slot(now + action[2][0] * unit, now + sum(action[2]) * unit)
                    d = island.manager.provision([urn], users=USERS, slot=moved)
                elif kind == "renew":
                    d = island.manager.renew([urn], island.clock.seconds() + action[2] * unit, extend_alap=action[3])
                else:
                    d = island.manager.delete([urn])
            if d is not None:
                outcome: list[Any] = []
                d.addBoth(outcome.append)
                self.assertEqual(len(outcome), 1)
                if isinstance(outcome[0], Booking):
                    made.append(outcome[0].sliver_urn)
                elif not isinstance(outcome[0], list):
                    outcome[0].trap(GeniError)
                    self.assertIn(outcome[0].value.code, expected, outcome[0].value.output)
            live = island.ok(island.store.list_live(Slot(0, 4e9)))
            for a, b in zip(live, live[1:]):
                self.assertLessEqual(a.slot.end, b.slot.start)
            ready = [b for b in live if b.operational_state is OperationalState.READY]
            self.assertLessEqual(len(ready), 1)
            if not ready:
                self.assertEqual(island.gateway.users, [])
