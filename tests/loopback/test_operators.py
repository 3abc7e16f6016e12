"""
Tests for L{geniam.managers.operators}: the operators' API at C{/admin} of
a real aggregate manager over TLS on loopback (real certificates, real
SQLite, the in-process simulated gateway), refused to non-operators, and
the AM's C{--operator} and booking-policy flags.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from geniam.booking.values import Slot
from geniam.client import AMClient, value_of
from geniam.errors import GeniCode
from geniam.managers.operators import Operators
from geniam.managers.policy import BookingPolicy
from geniam.tap.am import Options
from geniam.timeutil import format_time
from tests.loopback.test_am import HOUR, AggregateHarness

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@example.org"

class OperatorHarness(AggregateHarness):
    """An AM whose operator is the user bob; alice books."""

    async def start(self, **kwargs: Any) -> Any:
        kwargs.setdefault("operator_names", ("bob",))
        return await super().start(**kwargs)

    def admin(self, user: str = "bob") -> AMClient:
        client = AMClient(reactor, self.service.url + "admin", self.fed.domain.user(user), self.fed.domain.roots())
        self.addCleanup(client.close)
        return client

    def window(self) -> Slot:
        """From an hour ago to a hundred hours ahead."""
        now = self.clock.seconds()
        return Slot(now - HOUR, now + 100 * HOUR)

    async def running_booking(self, start_in: float = 10, length: float = HOUR) -> str:
        """Alice's provisioned booking, started now if C{start_in} has passed after the sweep."""
        client = self.alice()
        now = self.clock.seconds()
        rspec = self.request(now + start_in, now + start_in + length, controller="127.0.0.9:6633")
        sliver: str = value_of(await client.allocate(self.fed.slice_urn("exp1"), rspec))["geni_slivers"][0]["geni_sliver_urn"]
        value_of(await client.provision([sliver], geni_users=[{"urn": self.fed.domain.user_urn("alice"), "keys": [KEY]}]))
        return sliver

class OperatorAccessTests(OperatorHarness):
    """Only the configured operators reach the operators' API."""

    async def test_non_operator_refused(self) -> None:
        """A user who is no operator is FORBIDDEN every method and changes nothing."""
        await self.start()
        sliver = await self.running_booking()
        alice = self.admin("alice")
        now = self.clock.seconds()
        calls = [
            alice.call("ListBookings", {}),
            alice.call("CancelBooking", sliver, "mine now"),
            alice.call("AddMaintenance", format_time(now), format_time(now + HOUR), "nope", {}),
            alice.call("SetPolicy", {"user_quota": 60.0}),
            alice.call("GetPolicy"),
            alice.call("ListAudit", {}),
        ]
        for call in calls:
            error = await self.assertGeniError(GeniCode.FORBIDDEN, call)
            self.assertIn("is not an operator", error.output)
        self.assertEqual(self.service.resource_manager.booking_policy, BookingPolicy())
        self.assertEqual(len(await self.service.store.list_live(self.window())), 1)
        self.assertEqual(await self.service.store.list_audit(), [])

    async def test_no_operators_configured(self) -> None:
        """With no operators named, everyone is refused."""
        await self.start(operator_names=())
        await self.assertGeniError(GeniCode.FORBIDDEN, self.admin("bob").call("GetPolicy"))

class OperatorActionTests(OperatorHarness):
    """What an operator does to a running AM."""

    async def test_list_bookings_and_holder(self) -> None:
        """The listing names slice, owner, state, slot and gateway status, and who holds the island now."""
        await self.start()
        sliver = await self.running_booking()
        listing = value_of(await self.admin().call("ListBookings", {}))
        self.assertEqual(listing["holder"], {})
        self.clock.advance(11)
        await self.sweep()
        listing = value_of(await self.admin().call("ListBookings", {}))
        (row,) = listing["bookings"]
        self.assertEqual(row["sliver_urn"], sliver)
        self.assertEqual(row["slice_urn"], self.fed.slice_urn("exp1"))
        self.assertEqual(row["owner_urn"], self.fed.domain.user_urn("alice"))
        self.assertEqual((row["state"], row["operational_state"], row["applied"]), ("provisioned", "ready", True))
        self.assertEqual(listing["holder"]["sliver_urn"], sliver)
        self.assertEqual(listing["gateway"], "simulated in process")
        later = value_of(await self.admin().call("ListBookings", {"start": format_time(self.clock.seconds() + 2 * HOUR)}))
        self.assertEqual(later["bookings"], [])

    async def test_cancel_running_booking(self) -> None:
        """Cancelling a running booking resets the gateway at once; its owner reads the reason; it is audited."""
        await self.start()
        sliver = await self.running_booking()
        self.clock.advance(11)
        await self.sweep()
        self.assertEqual(self.gateway.users, [KEY])
        cancelled = value_of(await self.admin().call("CancelBooking", sliver, "switch on fire"))
        self.assertEqual(cancelled["state"], "deleted")
        # No sweep ran: the cancellation itself emptied the gateway.
        self.assertEqual((self.gateway.users, self.gateway.proxy), ([], ""))
        error = await self.assertGeniError(GeniCode.SEARCHFAILED, self.alice().status([sliver]))
        self.assertIn("cancelled by the operator: switch on fire", error.output)
        (entry,) = await self.service.store.list_audit()
        self.assertEqual((entry.operator, entry.action), (self.fed.domain.user_urn("bob"), "cancel"))
        self.assertIn("switch on fire", entry.detail)
        self.assertEqual(entry.at, self.clock.seconds())
        audit = value_of(await self.admin().call("ListAudit", {}))
        self.assertEqual(audit[0]["action"], "cancel")

    async def test_cancel_needs_reason(self) -> None:
        """A cancellation without a reason is refused with BADARGS and cancels nothing."""
        await self.start()
        sliver = await self.running_booking()
        await self.assertGeniError(GeniCode.BADARGS, self.admin().call("CancelBooking", sliver, "  "))
        self.assertEqual(len(await self.service.store.list_live(self.window())), 1)

    async def test_maintenance_blocks_allocate(self) -> None:
        """A window lists overlapping bookings untouched, refuses Allocate naming it, and is advertised."""
        await self.start()
        sliver = await self.running_booking(start_in=HOUR, length=HOUR)
        now = self.clock.seconds()
        added = value_of(
            await self.admin().call("AddMaintenance", format_time(now + 90 * 60), format_time(now + 4 * HOUR), "new switch", {})
        )
        self.assertEqual([b["sliver_urn"] for b in added["overlapping"]], [sliver])
        self.assertEqual(added["cancelled"], [])
        self.assertEqual(value_of(await self.alice().status([sliver]))["geni_slivers"][0]["geni_allocation_status"], "geni_provisioned")
        error = await self.assertGeniError(
            GeniCode.UNAVAILABLE,
            self.alice("exp2").allocate(self.fed.slice_urn("exp2"), self.request(now + 3 * HOUR, now + 5 * HOUR)),
        )
        self.assertIn("maintenance", error.output)
        self.assertIn("new switch", error.output)
        self.assertIn(format_time(now + 4 * HOUR), error.output)
        # Right after the window the island is free again.
        value_of(await self.alice("exp2").allocate(self.fed.slice_urn("exp2"), self.request(now + 4 * HOUR, now + 5 * HOUR)))
        ad = value_of(await self.alice().list_resources())
        self.assertIn('reason="new switch"', ad)
        self.assertIn("island:maintenance", ad)
        (entry,) = await self.service.store.list_audit()
        self.assertEqual(entry.action, "maintenance-add")
        removed = value_of(await self.admin().call("RemoveMaintenance", added["window"]["id"]))
        self.assertEqual(removed["reason"], "new switch")
        value_of(await self.alice("exp3").allocate(self.fed.slice_urn("exp3"), self.request(now + 3 * HOUR, now + 4 * HOUR)))

    async def test_maintenance_cancel_overlapping(self) -> None:
        """Asked to, a new window cancels the bookings it overlaps, running ones with a gateway reset."""
        await self.start()
        sliver = await self.running_booking()
        self.clock.advance(11)
        await self.sweep()
        now = self.clock.seconds()
        added = value_of(
            await self.admin().call(
                "AddMaintenance", format_time(now), format_time(now + HOUR), "power work", {"cancel_overlapping": True}
            )
        )
        self.assertEqual([b["sliver_urn"] for b in added["cancelled"]], [sliver])
        self.assertEqual(self.gateway.users, [])
        error = await self.assertGeniError(GeniCode.SEARCHFAILED, self.alice().status([sliver]))
        self.assertIn("power work", error.output)

    async def test_set_policy_without_restart(self) -> None:
        """A changed policy is advertised by GetVersion and enforced from the next Allocate."""
        await self.start()
        now = self.clock.seconds()
        before = value_of(await self.alice().get_version())
        self.assertNotEqual(before["geniam_booking_policy"].get("user_quota"), 2 * HOUR)
        policy = value_of(await self.admin().call("SetPolicy", {"user_quota": 2 * HOUR, "quota_window": 24 * HOUR}))
        self.assertEqual(policy["user_quota"], 2 * HOUR)
        version = value_of(await self.alice().get_version())
        self.assertEqual(version["geniam_booking_policy"]["user_quota"], 2 * HOUR)
        self.assertEqual(version["geniam_booking_policy"]["quota_window"], 24 * HOUR)
        value_of(await self.alice().allocate(self.fed.slice_urn("exp1"), self.request(now + HOUR, now + 2 * HOUR)))
        error = await self.assertGeniError(
            GeniCode.REFUSED,
            self.alice("exp2").allocate(self.fed.slice_urn("exp2"), self.request(now + 3 * HOUR, now + 4 * HOUR + 60)),
        )
        self.assertIn("user_quota", error.output)
        value_of(await self.alice("exp2").allocate(self.fed.slice_urn("exp2"), self.request(now + 3 * HOUR, now + 4 * HOUR)))
        await self.assertGeniError(GeniCode.BADARGS, self.admin().call("SetPolicy", {"no_such_limit": 1.0}))
        (entry,) = await self.service.store.list_audit()
        self.assertEqual(entry.action, "policy")

class AdmissionEverywhereTests(OperatorHarness):
    """Maintenance windows and the booking policy refuse tickets and transactions as they refuse Allocate."""

    def cm(self) -> AMClient:
        client = AMClient(reactor, self.service.url + "protogeni/xmlrpc/cm/2.0", self.fed.domain.user("alice"), self.fed.domain.roots())
        self.addCleanup(client.close)
        return client

    async def get_ticket(self, slice_name: str, start: float, end: float) -> dict[str, Any]:
        """alice's GetTicket for C{slice_name} over the CM API: its {code, value, output} reply."""
        args = {
            "slice_urn": self.fed.slice_urn(slice_name),
            "credentials": [self.fed.slice_credential(slice_name, "alice")],
            "rspec": self.request(start, end),
        }
        reply: dict[str, Any] = await self.cm().call("GetTicket", args)
        return reply

    async def test_maintenance_blocks_tickets_and_transactions(self) -> None:
        """A slot overlapping a window gets no ticket and no transaction (UNAVAILABLE naming it); the slot right after does."""
        await self.start()
        now = self.clock.seconds()
        start, end = now + HOUR, now + 3 * HOUR
        value_of(await self.admin().call("AddMaintenance", format_time(start), format_time(end), "new switch", {}))
        refused = await self.get_ticket("exp1", now + 2 * HOUR, now + 4 * HOUR)
        self.assertEqual(refused["code"], GeniCode.UNAVAILABLE, refused["output"])
        self.assertIn("maintenance", refused["output"])
        self.assertIn("new switch", refused["output"])
        self.assertIn(format_time(end), refused["output"])
        error = await self.assertGeniError(
            GeniCode.UNAVAILABLE,
            self.alice("exp2").begin_transaction(self.fed.slice_urn("exp2"), self.request(now + 2 * HOUR, now + 4 * HOUR)),
        )
        self.assertIn("maintenance", error.output)
        self.assertIn("new switch", error.output)
        self.assertIn(format_time(end), error.output)
        self.assertEqual(await self.service.store.count(), 0)
        # Right after the window the island may be held again.
        ticket = await self.get_ticket("exp1", end, end + HOUR)
        self.assertEqual(ticket["code"], 0, ticket["output"])
        self.assertIn("<type>ticket</type>", ticket["value"])
        begun = value_of(await self.alice("exp2").begin_transaction(self.fed.slice_urn("exp2"), self.request(end + HOUR, end + 2 * HOUR)))
        self.assertEqual([s["geni_allocation_status"] for s in begun["geni_slivers"]], ["geni_allocated"])

    async def test_policy_refuses_tickets_and_transactions(self) -> None:
        """A slot longer than the policy allows gets REFUSED with the policy's message from GetTicket and BeginTransaction."""
        await self.start()
        now = self.clock.seconds()
        value_of(await self.admin().call("SetPolicy", {"max_slot_length": HOUR}))
        refused = await self.get_ticket("exp1", now + HOUR, now + 3 * HOUR)
        self.assertEqual(refused["code"], GeniCode.REFUSED, refused["output"])
        self.assertIn("max_slot_length", refused["output"])
        error = await self.assertGeniError(
            GeniCode.REFUSED,
            self.alice("exp2").begin_transaction(self.fed.slice_urn("exp2"), self.request(now + HOUR, now + 3 * HOUR)),
        )
        self.assertIn("max_slot_length", error.output)
        self.assertEqual(await self.service.store.count(), 0)
        ticket = await self.get_ticket("exp1", now + HOUR, now + 2 * HOUR)
        self.assertEqual(ticket["code"], 0, ticket["output"])
        value_of(await self.alice("exp2").begin_transaction(self.fed.slice_urn("exp2"), self.request(now + 3 * HOUR, now + 4 * HOUR)))


class OperatorOptionsTests(SynchronousTestCase):
    """C{--operator} and the policy flags of C{twistd geniam-am}, and their TOML settings."""

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--data-dir", self.mktemp(), *args])
        return options

    def test_policy_flags(self) -> None:
        """Each policy flag lands in the booking policy."""
        options = self.parse(
            "--max-slot-length", "2h", "--min-slot-length", "5m", "--max-advance", "30d",
            "--user-quota", "4h", "--slice-quota", "3h", "--quota-window", "1d",
        )  # fmt: skip
        self.assertEqual(
            options.booking_policy(), BookingPolicy(7200.0, 300.0, 30 * 86400.0, 4 * 3600.0, 3 * 3600.0, 86400.0)
        )

    def test_defaults_stay_out_of_the_way(self) -> None:
        """By default only the longest slot (7 days) limits a booking."""
        self.assertEqual(self.parse().booking_policy(), BookingPolicy())
        self.assertEqual(BookingPolicy().as_struct()["user_quota"], 0.0)

    def test_toml(self) -> None:
        """The policy and the operators may be set in the [am] table."""
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[am]\nuser_quota = "6h"\noperator = ["urn:publicid:IDN+ops+user+ann"]\n')
        options = self.parse("--config", path)
        self.assertEqual(options.booking_policy().user_quota, 6 * 3600.0)
        self.assertEqual(options.operators(), Operators.named(["urn:publicid:IDN+ops+user+ann"]))

    def test_bad_values(self) -> None:
        """A minimum over the maximum and an operator that is neither URN nor file are usage errors."""
        self.assertRaises(usage.UsageError, self.parse, "--min-slot-length", "8d")
        self.assertRaises(usage.UsageError, self.parse, "--operator", "not a urn")

