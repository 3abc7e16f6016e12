"""
The aggregate manager end to end: real TLS with client certificates on
127.0.0.1, real signed credentials, a real SQLite store, and a
L{task.Clock} for the booking time line.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.client import credential_struct, value_of
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.protocols.peer import PeerConnectionError
from geniam.rspec.compression import decompress_rspec
from geniam.rspec.request import build_request
from geniam.timeutil import format_time, parse_time
from tests.domains import copied_domain

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq5P0wVtV0bWbFQqg8Xn1K1JmHhJ7m1fQ1b3c7m5a1b alice@laptop"
HOUR = 3600.0


def make_domain(folder: Path) -> None:
    """Make a trust domain with am1 and two users in C{folder}."""
    clock = Clock()
    clock.advance(time.time() - 3600)
    LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"))


class AggregateHarness(TestCase):
    """A running aggregate manager with TLS clients, for the tests below."""

    async def start(self, **kwargs: Any) -> LoopbackFederation:
        folder = copied_domain(self, "am", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        federation = LoopbackFederation(
            folder, reactor, self.clock, aggregate_names=("am1",), user_names=("alice", "bob"), **kwargs
        )
        await federation.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        self.service = federation.aggregates["am1"]
        self.gateway = federation.gateways["am1"]
        self.fed = federation
        return federation

    def alice(self, slice_name: str = "exp1") -> Any:
        fed = self.fed
        return fed.client("alice", "am1", (fed.user_credential("alice"), fed.slice_credential(slice_name, "alice")))

    def request(self, start: float, end: float, **kwargs: Any) -> str:
        return build_request(start, end, **kwargs)

    async def assertGeniError(self, code: GeniCode, d: Any) -> GeniError:
        struct = await d
        with self.assertRaises(GeniError) as cm:
            value_of(struct)
        self.assertEqual(cm.exception.code, code, cm.exception.output)
        self.assertTrue(cm.exception.output)
        return cm.exception

    async def sweep(self) -> None:
        await self.service.resource_manager.sweep()



class AggregateLoopbackTests(AggregateHarness):
    """AM API v3 calls from a TLS client to a running aggregate manager."""

    async def test_get_version(self) -> None:
        """GetVersion describes AM API v3 at this URL, with integer single-allocation and GENI v3 RSpecs."""
        await self.start()
        struct = await self.alice().get_version()
        version = value_of(struct)
        self.assertEqual(struct["geni_api"], 3)
        self.assertEqual(version["geni_api_versions"]["3"], self.service.url)
        self.assertEqual(version["geni_single_allocation"], 0)
        self.assertIsInstance(version["geni_single_allocation"], int)
        self.assertEqual(version["geni_ad_rspec_versions"][0]["type"], "GENI")
        self.assertIn({"geni_type": "geni_sfa", "geni_version": "3"}, version["geni_credential_types"])

    async def test_list_resources(self) -> None:
        """ListResources advertises the island's switches, optionally compressed; it needs a user credential."""
        await self.start()
        client = self.alice()
        ad = value_of(await client.list_resources())
        self.assertEqual(ad.count("<node "), len(self.gateway.switches))
        compressed = value_of(await client.list_resources(geni_compressed=True))
        self.assertEqual(decompress_rspec(compressed).count("<node "), len(self.gateway.switches))
        await self.assertGeniError(GeniCode.FORBIDDEN, client.list_resources(credentials=[]))
        await self.assertGeniError(GeniCode.BADARGS, client.call("ListResources", client.credentials, {}))
        await self.assertGeniError(
            GeniCode.BADVERSION,
            client.call("ListResources", client.credentials, {"geni_rspec_version": {"type": "PG", "version": "2"}}),
        )

    async def test_lifecycle(self) -> None:
        """Allocate, Provision, slot start, Renew, stop/start, slot end: the gateway follows the booking."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        rspec = self.request(now + 60, now + HOUR, controller="127.0.0.1:6633", vlan_map={"10": "0xffff"})
        allocated = value_of(await client.allocate(slice_urn, rspec))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        self.assertEqual(allocated["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")
        self.assertIn(sliver, allocated["geni_rspec"])
        status = value_of(await client.status([slice_urn]))
        self.assertEqual(status["geni_slivers"][0]["geni_operational_status"], "geni_pending_allocation")
        self.assertEqual(status["geni_slivers"][0]["geni_error"], "")

        users = [{"urn": self.fed.domain.user_urn("alice"), "keys": [KEY]}]
        provisioned = value_of(await client.provision([sliver], geni_users=users))
        self.assertEqual(provisioned["geni_slivers"][0]["geni_allocation_status"], "geni_provisioned")
        self.assertEqual(provisioned["geni_slivers"][0]["geni_expires"], format_time(now + HOUR))
        status = value_of(await client.status([sliver]))
        self.assertEqual(status["geni_slivers"][0]["geni_operational_status"], "geni_notready")
        self.assertEqual(self.gateway.users, [])

        self.clock.advance(61)
        await self.sweep()
        status = value_of(await client.status([slice_urn]))
        self.assertEqual(status["geni_slivers"][0]["geni_operational_status"], "geni_ready")
        self.assertEqual(self.gateway.users, [KEY])
        self.assertEqual(self.gateway.proxy, "127.0.0.1:6633")
        self.assertEqual(self.gateway.vlans, {"10": "0xffff"})

        renewed = value_of(await client.renew([sliver], format_time(now + 2 * HOUR)))
        self.assertEqual(renewed[0]["geni_expires"], format_time(now + 2 * HOUR))

        stopped = value_of(await client.perform([sliver], "geni_stop"))
        self.assertEqual(stopped[0]["geni_operational_status"], "geni_notready")
        self.assertEqual(self.gateway.users, [])
        started = value_of(await client.perform([sliver], "geni_start"))
        self.assertEqual(started[0]["geni_operational_status"], "geni_ready")
        self.assertEqual(self.gateway.proxy, "127.0.0.1:6633")

        self.clock.advance(2 * HOUR)
        await self.sweep()
        self.assertEqual((self.gateway.users, self.gateway.proxy, self.gateway.vlans), ([], "", {}))
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([slice_urn]))
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([sliver]))

    async def test_provision_update(self) -> None:
        """Provision on a provisioned sliver updates its controller, VLANs and slot; a taken slot is refused."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        first = value_of(await client.allocate(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        sliver = first["geni_slivers"][0]["geni_sliver_urn"]
        await self.assertGeniError(
            GeniCode.REFUSED, client.provision([sliver], geniam_end_time=format_time(now + 3 * HOUR))
        )
        value_of(await client.provision([sliver]))
        updated = value_of(
            await client.provision(
                [sliver], geniam_controller="127.0.0.2:6653", geniam_vlans={"30": "20"},
                geniam_end_time=format_time(now + 3 * HOUR),
            )
        )
        self.assertEqual(updated["geni_slivers"][0]["geni_expires"], format_time(now + 3 * HOUR))
        self.assertIn("127.0.0.2:6653", updated["geni_rspec"])
        bob = self.fed.client("bob", "am1", (self.fed.slice_credential("bobexp", "bob"),))
        value_of(await bob.allocate(self.fed.slice_urn("bobexp"), self.request(now + 4 * HOUR, now + 5 * HOUR)))
        await self.assertGeniError(
            GeniCode.UNAVAILABLE, client.provision([sliver], geniam_end_time=format_time(now + 4 * HOUR + 1))
        )
        await self.assertGeniError(GeniCode.BADARGS, client.provision([sliver], geniam_controller="x;reboot:1"))

    async def test_overlap_and_back_to_back(self) -> None:
        """Another slice cannot book an overlapping slot, but may book the slot right after."""
        await self.start()
        now = self.clock.seconds()
        alice = self.alice()
        bob = self.fed.client("bob", "am1", (self.fed.slice_credential("bobexp", "bob"),))
        value_of(await alice.allocate(self.fed.slice_urn("exp1"), self.request(now + HOUR, now + 2 * HOUR)))
        error = await self.assertGeniError(
            GeniCode.UNAVAILABLE,
            bob.allocate(self.fed.slice_urn("bobexp"), self.request(now + 90 * 60, now + 3 * HOUR)),
        )
        self.assertNotIn("exp1", error.output)
        value_of(await bob.allocate(self.fed.slice_urn("bobexp"), self.request(now + 2 * HOUR, now + 3 * HOUR)))
        ad = value_of(await alice.list_resources())
        self.assertNotIn("bobexp", ad)
        self.assertEqual(ad.count("<island:booked "), 2)

    async def test_renew_alap_several_slivers(self) -> None:
        """
        A slice with three slivers on the island, and bob's booking after
        them: Renew with geni_extend_alap extends each sliver up to its own
        next conflict (its sibling's start, then bob's start).
        """
        await self.start()
        client = self.alice()
        bob = self.fed.client("bob", "am1", (self.fed.user_credential("bob"), self.fed.slice_credential("exp2", "bob")))
        now = float(int(self.clock.seconds()))
        slice_urn = self.fed.slice_urn("exp1")
        slots = [(now + HOUR, now + 2 * HOUR), (now + 3 * HOUR, now + 4 * HOUR), (now + 5 * HOUR, now + 6 * HOUR)]
        for start, end in slots:
            value_of(await client.allocate(slice_urn, self.request(start, end)))
        value_of(await bob.allocate(self.fed.slice_urn("exp2"), self.request(now + 8 * HOUR, now + 9 * HOUR)))
        renewed = value_of(await client.renew([slice_urn], format_time(now + 20 * HOUR), geni_extend_alap=True))
        self.assertEqual(len(renewed), 3)
        bookings = sorted(await self.service.store.list_by_slice(slice_urn), key=lambda b: b.slot.start)
        self.assertEqual(
            [(b.slot.start, b.slot.end) for b in bookings],
            [(slots[0][0], slots[1][0]), (slots[1][0], slots[2][0]), (slots[2][0], now + 8 * HOUR)],
        )

    async def test_stopped_aggregate_answers_nothing_more(self) -> None:
        """
        A stopped aggregate drops the connections clients keep alive: a
        client whose last call went through gets a connection error next,
        not an answer from the stopped service.
        """
        fed = await self.start()
        client = self.alice()
        value_of(await client.get_version())
        site = fed.aggregates["am1"].site
        assert site is not None
        self.assertEqual(site.open_connections, 1)
        await fed.stop_aggregate("am1")
        with self.assertRaises(PeerConnectionError):
            await client.get_version()

    async def test_default_allocation_lifetime_is_48_hours(self) -> None:
        """Without --allocation-ttl, an allocation far from its slot's end is held 48 hours (the seed's default)."""
        await self.start()
        now = self.clock.seconds()
        client = self.alice()
        value_of(await client.allocate(self.fed.slice_urn("exp1"), self.request(now + 100 * HOUR, now + 101 * HOUR)))
        (sliver,) = value_of(await client.status([self.fed.slice_urn("exp1")]))["geni_slivers"]
        # geni_expires is RFC 3339 to the second.
        self.assertLess(abs(parse_time(sliver["geni_expires"]) - now - 48 * HOUR), 1.0)

    async def test_allocation_expires(self) -> None:
        """An allocation not provisioned before its expiry is released."""
        await self.start(allocation_ttl=600.0)
        now = self.clock.seconds()
        client = self.alice()
        value_of(await client.allocate(self.fed.slice_urn("exp1"), self.request(now + HOUR, now + 2 * HOUR)))
        self.clock.advance(601)
        await self.sweep()
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status([self.fed.slice_urn("exp1")]))

    async def test_concurrent_allocates(self) -> None:
        """Twenty Allocates of one slot racing over TLS: exactly one succeeds."""
        await self.start()
        now = self.clock.seconds()
        clients = [self.alice(f"race{i}") for i in range(20)]
        rspec = self.request(now + HOUR, now + 2 * HOUR)
        results = await DeferredList(
            [c.allocate(self.fed.slice_urn(f"race{i}"), rspec) for i, c in enumerate(clients)], consumeErrors=True
        )
        codes = [r[1]["code"]["geni_code"] for r in results if r[0]]
        self.assertEqual(len(codes), 20)
        self.assertEqual(codes.count(0), 1)
        self.assertEqual(codes.count(GeniCode.UNAVAILABLE), 19)
        self.assertEqual(await self.service.store.count(), 1)

    async def test_credentials_enforced(self) -> None:
        """A slice credential for another slice, or someone else's credential, is refused."""
        await self.start()
        now = self.clock.seconds()
        rspec = self.request(now + HOUR, now + 2 * HOUR)
        alice = self.alice("exp1")
        error = await self.assertGeniError(
            GeniCode.CREDENTIAL_MISMATCH, alice.allocate(self.fed.slice_urn("other"), rspec)
        )
        self.assertIn("slice+exp1", error.output)
        bob_with_alices = self.fed.client("bob", "am1", (self.fed.slice_credential("exp1", "alice"),))
        struct = await bob_with_alices.allocate(self.fed.slice_urn("exp1"), rspec)
        self.assertNotEqual(struct["code"]["geni_code"], 0)
        user_only = self.fed.client("alice", "am1", (self.fed.user_credential("alice"),))
        struct = await user_only.allocate(self.fed.slice_urn("exp1"), rspec)
        self.assertNotEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(await self.service.store.count(), 0)

    async def test_bad_input_leaves_store_untouched(self) -> None:
        """Wrong types, hostile RSpecs and bad slots get GENI errors and book nothing."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
            '<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">&b;</rspec>'
        )
        await self.assertGeniError(GeniCode.BADARGS, client.allocate(slice_urn, bomb))
        await self.assertGeniError(GeniCode.BADARGS, client.allocate(slice_urn, "<rspec"))
        await self.assertGeniError(GeniCode.BADARGS, client.call("Allocate", slice_urn, client.credentials, 42, {}))
        await self.assertGeniError(GeniCode.BADARGS, client.call("Allocate", [slice_urn], client.credentials, "x", {}))
        backwards = self.request(now + HOUR, now + 2 * HOUR).replace(format_time(now + HOUR), format_time(now + 3 * HOUR))
        await self.assertGeniError(GeniCode.BADARGS, client.allocate(slice_urn, backwards))
        await self.assertGeniError(GeniCode.BADARGS, client.allocate("urn:publicid:IDN+x+user+y", self.request(now + HOUR, now + 2 * HOUR)))
        await self.assertGeniError(GeniCode.BADARGS, client.call("Renew", [slice_urn], client.credentials, "later", {}))
        await self.assertGeniError(GeniCode.UNSUPPORTED, client.perform([slice_urn], "geni_reboot_the_world"))
        await self.assertGeniError(GeniCode.SEARCHFAILED, client.status(["urn:publicid:IDN+geniam:demo:am1+sliver+nope"]))
        self.assertEqual(await self.service.store.count(), 0)

    async def test_delete_and_shutdown(self) -> None:
        """Delete of a started slot resets the gateway; Shutdown stops a slice and refuses changes."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        sliver = value_of(await client.allocate(slice_urn, self.request(now + 10, now + HOUR, controller="127.0.0.9:6633")))[
            "geni_slivers"
        ][0]["geni_sliver_urn"]
        value_of(await client.provision([sliver]))
        self.clock.advance(11)
        await self.sweep()
        self.assertEqual(self.gateway.proxy, "127.0.0.9:6633")
        deleted = value_of(await client.delete([sliver]))
        self.assertEqual(deleted[0]["geni_allocation_status"], "geni_unallocated")
        self.assertEqual(self.gateway.proxy, "")

        value_of(await client.allocate(slice_urn, self.request(now + 2 * HOUR, now + 3 * HOUR)))
        self.assertIs(value_of(await client.shutdown(slice_urn)), True)
        await self.assertGeniError(
            GeniCode.REFUSED, client.allocate(slice_urn, self.request(now + 4 * HOUR, now + 5 * HOUR))
        )

    async def test_restart_keeps_bookings(self) -> None:
        """Bookings survive a restart of the aggregate on the same database."""
        fed = await self.start()
        client = self.alice()
        now = self.clock.seconds()
        value_of(await client.allocate(fed.slice_urn("exp1"), self.request(now + HOUR, now + 2 * HOUR)))
        await fed.aggregates["am1"].stopService()
        service = fed.build_aggregate("am1")
        fed.aggregates["am1"] = service
        service.startService()
        await service.when_started()
        again = fed.client("alice", "am1", (fed.slice_credential("exp1", "alice"),))
        status = value_of(await again.status([fed.slice_urn("exp1")]))
        self.assertEqual(status["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")

    async def test_credential_struct_and_bare_string(self) -> None:
        """Credentials are accepted as v3 structs and as bare strings."""
        await self.start()
        client = self.alice()
        cred = self.fed.user_credential("alice")
        for form in ([credential_struct(cred)], [cred]):
            ad = value_of(await client.call("ListResources", form, {"geni_rspec_version": {"type": "GENI", "version": "3"}}))
            self.assertIn("<rspec", ad)


class AggregateWireTests(AggregateHarness):
    """Describe, and what reaches the aggregate that is not proper XML-RPC."""

    async def post(self, body: bytes) -> tuple[int, bytes]:
        from io import BytesIO

        from twisted.web.client import Agent, FileBodyProducer, readBody
        from twisted.web.http_headers import Headers

        client = self.alice()
        agent = Agent(reactor, contextFactory=client.policy, pool=client.peer.pool)
        response = await agent.request(
            b"POST", self.service.url.encode(), Headers({b"Content-Type": [b"text/xml"]}), FileBodyProducer(BytesIO(body))
        )
        return response.code, await readBody(response)

    async def test_describe(self) -> None:
        """Describe returns the manifest with the slot and the sliver states; an empty slice an empty manifest."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        empty = value_of(await client.describe([slice_urn]))
        self.assertEqual(empty["geni_slivers"], [])
        self.assertNotIn("<node", empty["geni_rspec"])
        allocated = value_of(await client.allocate(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        described = value_of(await client.describe([slice_urn]))
        self.assertEqual(described["geni_urn"], slice_urn)
        self.assertEqual([s["geni_sliver_urn"] for s in described["geni_slivers"]], [sliver])
        self.assertIn(format_time(now + HOUR), described["geni_rspec"])
        compressed = value_of(await client.describe([sliver], geni_compressed=True))
        self.assertIn(sliver, decompress_rspec(compressed["geni_rspec"]))
        await self.assertGeniError(GeniCode.BADARGS, client.call("Describe", [slice_urn], client.credentials, {}))

    async def test_oversized_body_refused(self) -> None:
        """A body announced over the limit is refused with HTTP 413 before it is sent, and books nothing."""
        from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
        from twisted.internet.protocol import Protocol

        await self.start()
        client = self.alice()
        port = self.service.port.getHost().port  # type: ignore[union-attr]
        done: Deferred[bytes] = Deferred()

        class Raw(Protocol):
            received = b""

            def connectionMade(self) -> None:
                self.transport.write(
                    b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
                    b"Content-Length: %d\r\n\r\n<?xml" % (64 * 1024 * 1024)
                )

            def dataReceived(self, data: bytes) -> None:
                self.received += data

            def connectionLost(self, reason: object) -> None:
                done.callback(self.received)

        creator = client.policy.creatorForNetloc(b"127.0.0.1", port)
        await connectProtocol(SSL4ClientEndpoint(reactor, "127.0.0.1", port, creator), Raw())
        reply = await done
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:80])
        self.assertEqual(await self.service.store.count(), 0)

    async def test_malformed_xmlrpc_is_a_fault(self) -> None:
        """Malformed XML-RPC gets an XML-RPC fault, not a traceback."""
        import xmlrpc.client

        await self.start()
        for body in (b"<methodCall><methodName>GetVersion", b"not xml at all"):
            code, reply = await self.post(body)
            self.assertEqual(code, 200)
            with self.assertRaises(xmlrpc.client.Fault):
                xmlrpc.client.loads(reply)
            self.assertNotIn(b"Traceback", reply)
