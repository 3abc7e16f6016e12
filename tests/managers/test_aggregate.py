"""
Tests for L{geniam.managers.aggregate}, the AM API v3 adapter, on its own:
each method's argument handling, what it asks the authorisation seam and
the resource manager, and how their errors reach the caller as GENI
codes. The resource manager and the authorizer are in-memory fakes of
their zope interfaces; the wire is covered by C{tests.loopback.test_am}.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Coroutine
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from geniam.booking.values import AllocationState, Booking, OperationalState, Slot, UserKeys, make_sliver_urn
from geniam.errors import GeniCode, GeniError
from geniam.interfaces import IAuthorizer, IResourceManager
from geniam.managers.aggregate import AggregateInfo, AggregateManager
from geniam.managers.inventory import KnownInventory
from geniam.rspec.request import build_request
from geniam.timeutil import format_time
from geniam.trust.context import CallContext
from geniam.trust.gid import GID
from geniam.trust.verdicts import Grant
from tests.trust.test_credential_fixtures import world

NOW = 1_900_000_000.0
HOUR = 3600.0
AUTHORITY = "am.example"
AM_URN = f"urn:publicid:IDN+{AUTHORITY}+authority+am"
SLICE = "urn:publicid:IDN+sa.example:proj+slice+exp1"
OTHER_SLICE = "urn:publicid:IDN+sa.example:proj+slice+exp2"
CREDENTIALS = [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": "<signed-credential/>"}]
V3 = {"geni_rspec_version": {"type": "GENI", "version": "3"}}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example"


@implementer(IAuthorizer)
class FakeAuthorizer:
    """Grants every call with C{grant}, or refuses every call with C{refusal}; records what it was asked."""

    def __init__(self, grant: Grant, refusal: GeniError | None = None) -> None:
        self.grant = grant
        self.refusal = refusal
        self.asked: list[tuple[Any, Any, str, str | None, Any]] = []

    def authorize(self, peer: Any, credentials: Any, method: str, target_urn: str | None = None, options: Any = None) -> Deferred[Grant]:
        """Record the question; answer with the grant or the refusal."""
        self.asked.append((peer, credentials, method, target_urn, options))
        if self.refusal is not None:
            return fail(self.refusal)
        return succeed(self.grant)


@implementer(IResourceManager)
class FakeResourceManager:
    """
    An island resource manager over a dict of bookings. Every call is
    recorded in C{calls}; C{failing} maps a sliver URN to the error any
    change of it fails with.
    """

    authority = AUTHORITY
    allocation_ttl = 600.0
    max_slot_length = 30 * 86400.0

    def __init__(self, *bookings: Booking) -> None:
        self.bookings = {b.sliver_urn: b for b in bookings}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.failing: dict[str, GeniError] = {}

    def _record(self, name: str, *args: Any) -> None:
        self.calls.append((name, args))

    def called(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of each call of C{name}."""
        return [args for called, args in self.calls if called == name]

    def _change(self, name: str, chosen: list[Any], **changes: Any) -> Deferred[list[Booking]]:
        self._record(name, [b.sliver_urn for b in chosen])
        for booking in chosen:
            if booking.sliver_urn in self.failing:
                return fail(self.failing[booking.sliver_urn])
        changed = [dataclasses.replace(self.bookings[b.sliver_urn], **changes) for b in chosen]
        self.bookings.update((b.sliver_urn, b) for b in changed)
        return succeed(changed)

    def start(self) -> Deferred[None]:
        """Nothing to start."""
        return succeed(None)

    def stop(self) -> Deferred[None]:
        """Nothing to stop."""
        return succeed(None)

    def inventory(self) -> Deferred[KnownInventory]:
        """One switch, no links."""
        return succeed(KnownInventory(("00:00:00:00:00:00:00:01",), ()))

    def booked_slots(self, window: Slot) -> Deferred[list[Slot]]:
        """The slots of every booking, by start."""
        self._record("booked_slots", window)
        return succeed(sorted((b.slot for b in self.bookings.values()), key=lambda s: s.start))

    def check_availability(self, slot: Slot) -> Deferred[bool]:
        """Free unless a booking overlaps."""
        return succeed(not any(b.slot.start < slot.end and slot.start < b.slot.end for b in self.bookings.values()))

    def allocate(self, slice_urn: str, owner_urn: str, owner_email: str, slot: Slot, credential_expires: float | None, controller: str | None = None, vlan_map: Any = None) -> Deferred[Booking]:
        """Record the request and answer a new allocated booking."""
        self._record("allocate", slice_urn, owner_urn, owner_email, slot, credential_expires, controller, vlan_map)
        if slice_urn in self.failing:
            return fail(self.failing[slice_urn])
        booking = make_booking(slice_urn, f"s{len(self.bookings) + 1}", slot)
        self.bookings[booking.sliver_urn] = booking
        return succeed(booking)

    def provision(self, sliver_urns: Any, users: Any = None, controller: Any = None, vlan_map: Any = None, slot: Any = None, credential_expires: Any = None) -> Deferred[list[Booking]]:
        """Mark the bookings provisioned."""
        self._record("provision.args", users, controller, vlan_map, slot, credential_expires)
        return self._change("provision", list(sliver_urns), allocation_state=AllocationState.PROVISIONED)

    def renew(self, sliver_urns: Any, end: float, credential_expires: Any = None, extend_alap: bool = False) -> Deferred[list[Booking]]:
        """Move the slots' ends."""
        self._record("renew.args", end, credential_expires, extend_alap)
        chosen = list(sliver_urns)
        return self._change("renew", chosen, slot=Slot(chosen[0].slot.start, end))

    def delete(self, sliver_urns: Any) -> Deferred[list[Booking]]:
        """Mark the bookings deleted."""
        return self._change("delete", list(sliver_urns), allocation_state=AllocationState.DELETED)

    def shutdown(self, slice_urn: str) -> Deferred[list[Booking]]:
        """Record the emergency stop."""
        self._record("shutdown", slice_urn)
        return succeed([])

    def perform_action(self, sliver_urns: Any, action: str, users: Any = None) -> Deferred[list[Booking]]:
        """Record the action; the bookings are unchanged."""
        self._record("perform_action.args", action, users)
        return self._change("perform_action", list(sliver_urns))

    def lookup(self, sliver_urns: Any, include_dead: bool = False) -> Deferred[list[Booking]]:
        """The bookings asked for, or SEARCHFAILED naming the first unknown one."""
        self._record("lookup", list(sliver_urns))
        for urn in sliver_urns:
            if urn not in self.bookings:
                return fail(GeniError(GeniCode.SEARCHFAILED, f"no sliver {urn} here"))
        return succeed([self.bookings[urn] for urn in sliver_urns])

    def slice_bookings(self, slice_urn: str, live_only: bool = True) -> Deferred[list[Booking]]:
        """The slice's bookings, by start."""
        found = [b for b in self.bookings.values() if b.slice_urn == slice_urn]
        return succeed(sorted(found, key=lambda b: b.slot.start))

    def is_shut_down(self, slice_urn: str) -> Deferred[bool]:
        """Never shut down."""
        return succeed(False)


def make_booking(slice_urn: str, name: str, slot: Slot, state: AllocationState = AllocationState.ALLOCATED) -> Booking:
    """An allocated booking of C{slot} for C{slice_urn}."""
    return Booking(
        sliver_urn=make_sliver_urn(AUTHORITY, name),
        slice_urn=slice_urn,
        owner_urn="urn:publicid:IDN+sa.example+user+alice",
        owner_email="",
        slot=slot,
        allocation_state=state,
        allocation_expires=NOW + 600,
        operational_state=OperationalState.NOTREADY,
    )


def grant_for(caller: GID, expires: float = NOW + 10 * HOUR) -> Grant:
    """A grant to C{caller} resting on no credential (the adapter reads only who and until when)."""
    return Grant(caller=caller, caller_urn=str(caller.urn), credentials=(), expires=expires, privileges=frozenset({"*"}))


class AdapterTestCase(SynchronousTestCase):
    """An adapter over a fake resource manager and a fake authorizer, on a clock at L{NOW}."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.alice = world().alice.gid
        self.first = make_booking(SLICE, "s1", Slot(NOW + HOUR, NOW + 2 * HOUR))
        self.second = make_booking(SLICE, "s2", Slot(NOW + 3 * HOUR, NOW + 4 * HOUR))
        self.rm = FakeResourceManager(self.first, self.second)
        self.authorizer = FakeAuthorizer(grant_for(self.alice))
        self.am = AggregateManager(self.rm, AggregateInfo(AM_URN, "https://am.example/"), self.clock)

    def called_by(self, caller: GID, credentials: Any = ()) -> CallContext:
        """The context of a call by C{caller} presenting C{credentials}, decided by the fake authorizer."""
        return CallContext(caller, credentials, self.authorizer)

    def done(self, call: Coroutine[Any, Any, Any]) -> Any:
        """The result of an adapter call that needs nothing but its fakes."""
        return self.successResultOf(Deferred.fromCoroutine(call))

    def refused(self, call: Coroutine[Any, Any, Any], code: GeniCode) -> GeniError:
        """The GeniError an adapter call fails with, checked to carry C{code}."""
        error = self.failureResultOf(Deferred.fromCoroutine(call), GeniError).value
        self.assertEqual(error.code, code, error.output)
        return error  # type: ignore[no-any-return]

    def asked(self) -> list[tuple[str, str | None]]:
        """The (method, target) pairs the authorizer was asked about."""
        return [(method, target) for _, _, method, target, _ in self.authorizer.asked]


class FakeTests(SynchronousTestCase):
    """The fakes are true to the interfaces the adapter depends on."""

    def test_fakes_provide_the_interfaces(self) -> None:
        """The fake resource manager and authorizer provide the seams' interfaces."""
        self.assertTrue(verifyObject(IResourceManager, FakeResourceManager()))
        self.assertTrue(verifyObject(IAuthorizer, FakeAuthorizer(grant_for(world().alice.gid))))


class AuthorisationTests(AdapterTestCase):
    """Every method but GetVersion asks the seam once, about the right slice, before touching the island."""

    def test_get_version_asks_nobody(self) -> None:
        """GetVersion needs no credential and lists the supported actions."""
        struct = self.done(self.am.GetVersion(self.called_by(self.alice), {}))
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertIn("geni_update_users", struct["value"]["geniam_actions"])
        self.assertEqual(self.authorizer.asked, [])

    def test_peer_credentials_and_options_go_to_the_seam(self) -> None:
        """The TLS peer, the credentials and the options reach the authorizer unchanged."""
        options = {"geni_rspec_version": {"type": "GENI", "version": "3"}, "geni_speaking_for": "urn:x"}
        self.done(self.am.ListResources(self.called_by(self.alice, CREDENTIALS), options))
        ((peer, credentials, method, target, seen),) = self.authorizer.asked
        self.assertIs(peer, self.alice)
        self.assertEqual(credentials, CREDENTIALS)
        self.assertEqual((method, target), ("ListResources", None))
        self.assertEqual(seen["geni_speaking_for"], "urn:x")

    def test_slice_urn_target(self) -> None:
        """A slice URN is the target as named; Status then reports all its slivers."""
        struct = self.done(self.am.Status(self.called_by(self.alice, CREDENTIALS), [SLICE], {}))
        self.assertEqual(self.asked(), [("Status", SLICE)])
        self.assertEqual([s["geni_sliver_urn"] for s in struct["value"]["geni_slivers"]], [self.first.sliver_urn, self.second.sliver_urn])

    def test_sliver_urns_target_their_slice(self) -> None:
        """For sliver URNs the slice is found from the bookings and is what the seam is asked about."""
        self.done(self.am.Status(self.called_by(self.alice, CREDENTIALS), [self.second.sliver_urn], {}))
        self.assertEqual(self.asked(), [("Status", SLICE)])

    def test_unknown_sliver_is_searchfailed_before_authorisation(self) -> None:
        """An unknown sliver fails with SEARCHFAILED and the seam is not asked."""
        self.refused(self.am.Status(self.called_by(self.alice, CREDENTIALS), [make_sliver_urn(AUTHORITY, "nope")], {}), GeniCode.SEARCHFAILED)
        self.assertEqual(self.authorizer.asked, [])

    def test_refusal_is_passed_on_unchanged(self) -> None:
        """A refusal reaches the caller with the seam's code and words, and the island is left alone."""
        self.authorizer.refusal = GeniError(GeniCode.FORBIDDEN, "no credential grants Delete on exp1")
        error = self.refused(self.am.Delete(self.called_by(self.alice, CREDENTIALS), [SLICE], {}), GeniCode.FORBIDDEN)
        self.assertEqual(error.output, "no credential grants Delete on exp1")
        self.assertEqual(self.rm.called("delete"), [])

    def test_slivers_of_two_slices(self) -> None:
        """Slivers of different slices in one call are BADARGS."""
        other = make_booking(OTHER_SLICE, "o1", Slot(NOW + 5 * HOUR, NOW + 6 * HOUR))
        self.rm.bookings[other.sliver_urn] = other
        self.refused(self.am.Status(self.called_by(self.alice, CREDENTIALS), [self.first.sliver_urn, other.sliver_urn], {}), GeniCode.BADARGS)
        self.assertEqual(self.authorizer.asked, [])

    def test_bad_urns(self) -> None:
        """A malformed URN list is BADARGS."""
        self.refused(self.am.Describe(self.called_by(self.alice, CREDENTIALS), "not a list", {}), GeniCode.BADARGS)
        self.refused(self.am.Describe(self.called_by(self.alice, CREDENTIALS), ["urn:publicid:IDN+x+user+bob"], {}), GeniCode.BADARGS)


class ListResourcesTests(AdapterTestCase):
    """ListResources reads its options strictly."""

    def test_slice_urn_option_refused(self) -> None:
        """geni_slice_urn belongs to AM API v2: BADARGS pointing at Describe."""
        error = self.refused(
            self.am.ListResources(self.called_by(self.alice, CREDENTIALS), {"geni_rspec_version": {"type": "GENI", "version": "3"}, "geni_slice_urn": SLICE}),
            GeniCode.BADARGS,
        )
        self.assertIn("Describe", error.output)

    def test_rspec_version_required(self) -> None:
        """An unsupported RSpec version is refused."""
        error = self.failureResultOf(
            Deferred.fromCoroutine(self.am.ListResources(self.called_by(self.alice, CREDENTIALS), {"geni_rspec_version": {"type": "ProtoGENI", "version": "2"}})),
            GeniError,
        ).value
        self.assertIn(error.code, (GeniCode.BADARGS, GeniCode.BADVERSION))

    def test_advertisement_shows_booked_slots(self) -> None:
        """The advertisement is asked of the island from now on and names the booked slots' times."""
        struct = self.done(self.am.ListResources(self.called_by(self.alice, CREDENTIALS), {"geni_rspec_version": {"type": "GENI", "version": "3"}}))
        ((window,),) = self.rm.called("booked_slots")
        self.assertEqual(window.start, NOW)
        self.assertIn(format_time(self.first.slot.start), struct["value"])


class AllocateTests(AdapterTestCase):
    """Allocate books for the user behind the call, capped at the grant's expiry."""

    def request(self, start: float = NOW + 5 * HOUR, end: float = NOW + 6 * HOUR, **kwargs: Any) -> str:
        return build_request(start, end, **kwargs)

    def test_books_for_the_caller(self) -> None:
        """The caller is the owner; the grant's expiry, the slot, controller and VLANs reach the resource manager."""
        rspec = self.request(controller="192.0.2.1:6653", vlan_map={"100": "10"})
        struct = self.done(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, rspec, {}))
        self.assertEqual(self.asked(), [("Allocate", SLICE)])
        ((slice_urn, owner, _, slot, expires, controller, vlans),) = self.rm.called("allocate")
        self.assertEqual((slice_urn, owner), (SLICE, self.alice.urn))
        self.assertEqual(slot, Slot(NOW + 5 * HOUR, NOW + 6 * HOUR))
        self.assertEqual(expires, NOW + 10 * HOUR)
        self.assertEqual((controller, vlans), ("192.0.2.1:6653", {"100": "10"}))
        self.assertEqual(struct["value"]["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")

    def test_no_user_behind_the_call(self) -> None:
        """A caller with no user behind it (a tool's own credential) cannot book: FORBIDDEN."""
        self.authorizer.grant = grant_for(world().tool.gid)
        error = self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, self.request(), {}), GeniCode.FORBIDDEN)
        self.assertIn("acts for no user", error.output)
        self.assertEqual(self.rm.called("allocate"), [])

    def test_bad_slice_urn_before_authorisation(self) -> None:
        """A malformed slice URN is BADARGS, without asking the seam."""
        self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), "urn:publicid:IDN+x+user+bob", self.request(), {}), GeniCode.BADARGS)
        self.assertEqual(self.authorizer.asked, [])

    def test_rspec_must_be_a_string(self) -> None:
        """A non-string RSpec is BADARGS."""
        self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, 42, {}), GeniCode.BADARGS)

    def test_slot_from_options(self) -> None:
        """Without a slot in the RSpec, geni_end_time (and geni_start_time, else now) make the slot."""
        rspec = build_request(NOW + HOUR, NOW + 2 * HOUR)
        without_slot = "\n".join(line for line in rspec.splitlines() if "slot" not in line)
        self.assertNotIn("slot", without_slot)
        error = self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, without_slot, {}), GeniCode.BADARGS)
        self.assertIn("no time slot", error.output)
        self.done(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, without_slot, {"geni_end_time": format_time(NOW + HOUR)}))
        self.assertEqual(self.rm.called("allocate")[-1][3], Slot(NOW, NOW + HOUR))

    def test_slot_mismatch(self) -> None:
        """Options contradicting the RSpec's slot are BADARGS."""
        options = {"geni_end_time": format_time(NOW + 7 * HOUR)}
        error = self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, self.request(), options), GeniCode.BADARGS)
        self.assertIn("differs", error.output)

    def test_resource_manager_errors_keep_their_code(self) -> None:
        """A domain refusal of the resource manager reaches the caller with its code."""
        self.rm.failing[SLICE] = GeniError(GeniCode.UNAVAILABLE, "the island is booked then")
        error = self.refused(self.am.Allocate(self.called_by(self.alice, CREDENTIALS), SLICE, self.request(), {}), GeniCode.UNAVAILABLE)
        self.assertEqual(error.output, "the island is booked then")


class ChangeTests(AdapterTestCase):
    """Renew, Provision, PerformOperationalAction, Delete and Shutdown."""

    def test_renew_passes_end_expiry_and_alap(self) -> None:
        """Renew sends the new end, the grant's expiry and geni_extend_alap."""
        end = NOW + 8 * HOUR
        struct = self.done(self.am.Renew(self.called_by(self.alice, CREDENTIALS), [self.second.sliver_urn], format_time(end), {"geni_extend_alap": True}))
        self.assertEqual(self.rm.called("renew.args"), [(end, NOW + 10 * HOUR, True)])
        self.assertEqual(struct["value"][0]["geniam_slot_end"], format_time(end))

    def test_renew_bad_time(self) -> None:
        """An unreadable expiration time is BADARGS, before anything is looked up."""
        self.refused(self.am.Renew(self.called_by(self.alice, CREDENTIALS), [SLICE], "next tuesday", {}), GeniCode.BADARGS)
        self.assertEqual(self.authorizer.asked, [])

    def test_all_or_nothing(self) -> None:
        """Without geni_best_effort one failing sliver fails the call with its code."""
        self.rm.failing[self.second.sliver_urn] = GeniError(GeniCode.UNAVAILABLE, "taken")
        self.refused(self.am.Renew(self.called_by(self.alice, CREDENTIALS), [SLICE], format_time(NOW + 9 * HOUR), {}), GeniCode.UNAVAILABLE)

    def test_best_effort_reports_per_sliver(self) -> None:
        """With geni_best_effort each sliver is tried alone and a failure is its geni_error."""
        self.rm.failing[self.second.sliver_urn] = GeniError(GeniCode.UNAVAILABLE, "taken")
        struct = self.done(self.am.Provision(self.called_by(self.alice, CREDENTIALS), [SLICE], {**V3, "geni_best_effort": True}))
        first, second = struct["value"]["geni_slivers"]
        self.assertEqual(first["geni_allocation_status"], "geni_provisioned")
        self.assertEqual(second["geni_error"], "UNAVAILABLE: taken")
        self.assertEqual(second["geni_allocation_status"], "geni_allocated")

    def test_provision_options(self) -> None:
        """Users, controller, VLAN map and the grant's expiry reach the resource manager."""
        options = {
            **V3,
            "geni_users": [{"urn": "urn:publicid:IDN+sa.example+user+alice", "keys": [KEY]}],
            "geniam_controller": "192.0.2.1:6653",
            "geniam_vlans": {"100": "10"},
        }
        self.done(self.am.Provision(self.called_by(self.alice, CREDENTIALS), [self.first.sliver_urn], options))
        ((users, controller, vlans, slot, expires),) = self.rm.called("provision.args")
        self.assertEqual(users, (UserKeys("urn:publicid:IDN+sa.example+user+alice", (KEY,)),))
        self.assertEqual((controller, vlans, slot, expires), ("192.0.2.1:6653", {"100": "10"}, None, NOW + 10 * HOUR))

    def test_provision_vlans_must_be_a_struct(self) -> None:
        """geniam_vlans that is not a struct is BADARGS, naming the option."""
        error = self.refused(self.am.Provision(self.called_by(self.alice, CREDENTIALS), [SLICE], {**V3, "geniam_vlans": ["100"]}), GeniCode.BADARGS)
        self.assertIn("geniam_vlans", error.output)
        self.assertEqual(self.authorizer.asked, [])

    def test_provision_users_and_vlans_checked_on_entry(self) -> None:
        """Malformed SSH keys or VLAN maps are BADARGS naming the rule, before authorisation; the island is not asked."""
        for options, words in (
            ({"geni_users": [{"urn": "urn:publicid:IDN+sa.example+user+alice", "keys": ["x"]}]}, "geni_users: "),
            ({"geniam_vlans": {"5000": "1"}}, "not an id 1-4094"),
            ({"geniam_vlans": {"1": "1", "2": "1"}}, "VLAN"),
        ):
            error = self.refused(self.am.Provision(self.called_by(self.alice, CREDENTIALS), [SLICE], {**V3, **options}), GeniCode.BADARGS)
            self.assertIn(words, error.output)
        action = {"geni_users": [{"urn": "urn:publicid:IDN+sa.example+user+alice", "keys": ["x"]}]}
        self.refused(self.am.PerformOperationalAction(self.called_by(self.alice, CREDENTIALS), [SLICE], "geni_update_users", action), GeniCode.BADARGS)
        self.assertEqual((self.authorizer.asked, self.rm.called("provision"), self.rm.called("perform_action")), ([], [], []))

    def test_unsupported_action(self) -> None:
        """An unknown action is UNSUPPORTED, naming the supported ones."""
        error = self.refused(self.am.PerformOperationalAction(self.called_by(self.alice, CREDENTIALS), [SLICE], "geni_reboot", {}), GeniCode.UNSUPPORTED)
        self.assertIn("geni_restart", error.output)
        self.assertEqual(self.authorizer.asked, [])

    def test_update_users_needs_users(self) -> None:
        """geni_update_users without geni_users is BADARGS."""
        self.refused(self.am.PerformOperationalAction(self.called_by(self.alice, CREDENTIALS), [SLICE], "geni_update_users", {}), GeniCode.BADARGS)

    def test_action_reaches_the_island(self) -> None:
        """A supported action is performed on every sliver of the slice."""
        self.done(self.am.PerformOperationalAction(self.called_by(self.alice, CREDENTIALS), [SLICE], "geni_stop", {}))
        self.assertEqual(self.rm.called("perform_action.args"), [("geni_stop", None)])
        self.assertEqual(self.rm.called("perform_action"), [([self.first.sliver_urn, self.second.sliver_urn],)])
        self.assertEqual(self.asked(), [("PerformOperationalAction", SLICE)])

    def test_delete_of_an_empty_slice_succeeds(self) -> None:
        """Deleting a slice with nothing here answers an empty list (so Delete can be repeated)."""
        struct = self.done(self.am.Delete(self.called_by(self.alice, CREDENTIALS), [OTHER_SLICE], {}))
        self.assertEqual(struct["value"], [])
        self.assertEqual(self.asked(), [("Delete", OTHER_SLICE)])

    def test_status_of_an_empty_slice_fails(self) -> None:
        """Status of a slice with nothing live here is SEARCHFAILED."""
        self.refused(self.am.Status(self.called_by(self.alice, CREDENTIALS), [OTHER_SLICE], {}), GeniCode.SEARCHFAILED)

    def test_shutdown(self) -> None:
        """Shutdown is authorised on the slice and stops it at the resource manager."""
        struct = self.done(self.am.Shutdown(self.called_by(self.alice, CREDENTIALS), SLICE, {}))
        self.assertIs(struct["value"], True)
        self.assertEqual(self.asked(), [("Shutdown", SLICE)])
        self.assertEqual(self.rm.called("shutdown"), [(SLICE,)])

    def test_options_must_be_a_struct(self) -> None:
        """Options that are not a struct are BADARGS for every method."""
        self.refused(self.am.Shutdown(self.called_by(self.alice, CREDENTIALS), SLICE, ["x"]), GeniCode.BADARGS)  # type: ignore[arg-type]
        self.refused(self.am.Status(self.called_by(self.alice, CREDENTIALS), [SLICE], "x"), GeniCode.BADARGS)  # type: ignore[arg-type]
