"""
The slice manager end to end on 127.0.0.1: real aggregate managers
(different islands) behind a real slice manager, mutual TLS everywhere,
real signed credentials (delegation and speaks-for), plus a dead peer
(refusing connections) and a hanging one (accepts TCP, never answers).
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.client import AMClient, credential_struct, value_of
from geniam.demo import federated_request
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.managers.slice import SliceManagerSettings
from geniam.rspec.merge import read_statistics
from geniam.tap.common import ServerTrust
from geniam.tap.sm import SliceManagerService
from geniam.timeutil import format_time
from geniam.trust.credential import as_struct
from geniam.trust.mint import delegate_credential, user_credential
from geniam.trust.speaksfor import issue_speaks_for
from tests.domains import copied_domain

HOUR = 3600.0
GENI_V3 = {"type": "GENI", "version": "3"}
NAMES = ("am1", "am2")


def make_domain(folder: Path) -> None:
    """Make a trust domain with two aggregates, a slice manager and alice in C{folder}."""
    federation = LoopbackFederation(folder, reactor, aggregate_names=NAMES, user_names=("alice",))
    federation.domain.ensure_aggregate("sm")


class SliceManagerLoopbackTests(TestCase):
    """AM API v3 through a slice manager to real aggregates."""

    timeout = 60

    async def start(self, extra: Sequence[tuple[str | None, str]] = (), clock: Any = None, **settings: Any) -> None:
        folder = copied_domain(self, "sm", make_domain)
        fed = LoopbackFederation(folder, reactor, aggregate_names=NAMES, user_names=("alice",))
        await fed.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        self.fed = fed
        domain = fed.domain
        self.sm_identity = domain.aggregate("sm")
        trust = ServerTrust(self.sm_identity, domain.roots(), domain.roots_dir, domain)
        own = [as_struct(user_credential(domain.ca, self.sm_identity.gid, time.time() + 30 * 86400))]
        aggregates: list[tuple[str | None, str]] = [(None, fed.url(name)) for name in NAMES] + list(extra)
        values = {"peer_timeout": 10.0, "deadline": 20.0, **settings}
        self.sm = SliceManagerService(
            reactor, trust, aggregates, own, 0, "127.0.0.1", settings=SliceManagerSettings(**values), clock=clock
        )
        self.sm.startService()
        self.addCleanup(self.sm.stopService)
        await self.sm.when_started()
        self.am_urns = [fed.aggregates[name].urn for name in NAMES]
        self.alice = domain.user("alice")
        self.slice_urn = fed.slice_urn("exp1")
        self.slice_cred = fed.slice_credential("exp1", "alice")
        self.user_cred = fed.user_credential("alice")

    def client(self, *credentials: Any) -> AMClient:
        client = AMClient(reactor, self.sm.url, self.alice, self.fed.domain.roots(), ())
        client.credentials = list(credentials)
        self.addCleanup(client.close)
        return client

    def delegated(self) -> dict[str, str]:
        return credential_struct(delegate_credential(self.slice_cred, self.alice, self.sm_identity.gid))

    def speaks_for(self) -> dict[str, str]:
        return as_struct(issue_speaks_for(self.alice, self.sm_identity.gid, time.time() + 86400), "geni_abac", "1")

    async def test_lifecycle(self) -> None:
        """
        Allocate and Provision (speaking for alice), then Status, Describe,
        Renew and Delete (with her slice credential delegated to the slice
        manager) reach both islands.
        """
        await self.start()
        client = self.client(self.speaks_for(), credential_struct(self.slice_cred))
        delegated = self.client(self.delegated())
        version = value_of(await client.get_version())
        self.assertEqual(version["interface"], "slicemgr")
        self.assertEqual(sorted(version["peers"]), sorted(self.am_urns))

        now = time.time()
        rspec = federated_request(now + HOUR, now + 2 * HOUR, self.am_urns)
        allocated = await client.allocate(self.slice_urn, rspec)
        value = value_of(allocated)
        self.assertEqual(len(value["geni_slivers"]), 2)
        self.assertEqual({s["geni_sliver_urn"].split("+")[1] for s in value["geni_slivers"]}, {"geniam:demo:am1", "geniam:demo:am2"})
        statistics = read_statistics(value["geni_rspec"])
        self.assertEqual(sorted((s["name"], s["status"]) for s in statistics), sorted((u, "success") for u in self.am_urns))
        self.assertEqual([s["status"] for s in allocated["geniam_statistics"]["aggregates"]], ["success", "success"])

        provisioned = value_of(await client.provision([self.slice_urn]))
        self.assertEqual({s["geni_allocation_status"] for s in provisioned["geni_slivers"]}, {"geni_provisioned"})
        status = value_of(await delegated.status([self.slice_urn]))
        self.assertEqual(status["geni_urn"], self.slice_urn)
        self.assertEqual(len(status["geni_slivers"]), 2)
        described = value_of(await delegated.describe([self.slice_urn]))
        self.assertEqual(len(described["geni_slivers"]), 2)
        self.assertEqual(len(read_statistics(described["geni_rspec"])), 2)
        one = [s["geni_sliver_urn"] for s in described["geni_slivers"] if "am2" in s["geni_sliver_urn"]]
        renewed = value_of(await delegated.renew(one, format_time(now + 3 * HOUR)))
        self.assertEqual([s["geni_sliver_urn"] for s in renewed], one)
        self.assertEqual([s["name"] for s in (await delegated.status(one))["geniam_statistics"]["aggregates"]], self.am_urns[1:])
        deleted = value_of(await delegated.delete([self.slice_urn]))
        self.assertEqual({s["geni_allocation_status"] for s in deleted}, {"geni_unallocated"})

    async def test_allocate_with_delegated_credential(self) -> None:
        """
        With only her slice credential delegated to the slice manager,
        alice allocates and provisions on both islands; each aggregate
        books for alice (the root of the delegation), not for the slice
        manager that called it.
        """
        await self.start()
        client = self.client(self.delegated())
        now = time.time()
        allocated = await client.allocate(self.slice_urn, federated_request(now + HOUR, now + 2 * HOUR, self.am_urns))
        value = value_of(allocated)
        self.assertEqual({s["geni_allocation_status"] for s in value["geni_slivers"]}, {"geni_allocated"})
        self.assertEqual([(s["name"], s["status"]) for s in allocated["geniam_statistics"]["aggregates"]], [(u, "success") for u in self.am_urns])
        provisioned = value_of(await client.provision([self.slice_urn]))
        self.assertEqual({s["geni_allocation_status"] for s in provisioned["geni_slivers"]}, {"geni_provisioned"})
        self.assertEqual(len(provisioned["geni_slivers"]), 2)
        for name in NAMES:
            bookings = await self.fed.aggregates[name].store.list_by_slice(self.slice_urn)
            self.assertEqual([b.owner_urn for b in bookings], [self.alice.gid.urn], name)

    async def test_list_resources_with_own_credential(self) -> None:
        """
        With only alice's user credential, ListResources goes through: the
        slice manager lists with its own credential (owner and target: the
        slice manager), and both aggregates answer.
        """
        await self.start()
        client = self.client(credential_struct(self.user_cred))
        listed = await client.list_resources(cached=False)
        ad = value_of(listed)
        statistics = read_statistics(ad)
        self.assertEqual(sorted((s["name"], s["status"]) for s in statistics), sorted((u, "success") for u in self.am_urns))
        for urn in self.am_urns:
            self.assertIn(urn, ad)

    async def test_speaks_for(self) -> None:
        """With a speaks-for credential, ListResources and Status go through on alice's behalf."""
        await self.start()
        client = self.client(self.speaks_for(), credential_struct(self.user_cred), credential_struct(self.slice_cred))
        listed = await client.list_resources(cached=False)
        ad = value_of(listed)
        statistics = read_statistics(ad)
        self.assertEqual(sorted(s["status"] for s in statistics), ["success", "success"])
        for urn in self.am_urns:
            self.assertIn(urn, ad)
        status = await client.status([self.slice_urn])
        self.assertEqual(status["code"]["geni_code"], GeniCode.SEARCHFAILED)
        self.assertEqual(len(status["geniam_statistics"]["aggregates"]), 2)

    async def test_plain_slice_credential_is_forbidden(self) -> None:
        """alice's own slice credential cannot be forwarded: a clear FORBIDDEN, and no aggregate is called."""
        await self.start()
        client = self.client(credential_struct(self.slice_cred))
        struct = await client.status([self.slice_urn])
        with self.assertRaises(GeniError) as cm:
            value_of(struct)
        self.assertEqual(cm.exception.code, GeniCode.FORBIDDEN)
        self.assertIn("delegated to it", cm.exception.output)

    async def test_slow_dead_and_hanging_peers(self) -> None:
        """A slow aggregate is waited for, a refusing peer fails, a hanging one times out; the call answers by the deadline."""
        silent = ServerFactory.forProtocol(Protocol)
        hang_port: Any = reactor.listenTCP(0, silent, interface="127.0.0.1")  # type: ignore[arg-type]
        self.addCleanup(hang_port.stopListening)
        dead_port: Any = reactor.listenTCP(0, silent, interface="127.0.0.1")  # type: ignore[arg-type]
        dead_url = f"https://127.0.0.1:{dead_port.getHost().port}/"
        await dead_port.stopListening()
        hang_urn = "urn:publicid:IDN+geniam:demo:hang+authority+am"
        dead_urn = "urn:publicid:IDN+geniam:demo:dead+authority+am"
        hang_url = f"https://127.0.0.1:{hang_port.getHost().port}/"
        extra: list[tuple[str | None, str]] = [(dead_urn, dead_url), (hang_urn, hang_url)]
        clock = Clock()
        clock.advance(time.time())
        await self.start(extra, clock=clock, peer_timeout=1.5, deadline=2.5)
        slow = self.fed.aggregates["am2"].manager
        assert slow is not None
        answer = slow.ListResources
        called: Deferred[None] = Deferred()
        release: Deferred[None] = Deferred()

        async def slowly(*args: Any) -> Any:
            called.callback(None)
            await release
            return await answer(*args)

        slow.ListResources = slowly  # type: ignore[method-assign,assignment]
        # Let the real network answer (or refuse) before booking time moves on.
        answered: dict[str, Deferred[None]] = {}
        manager = self.sm.manager
        assert manager is not None
        for record in manager.records:
            if record.url == hang_url:
                continue
            done: Deferred[None] = Deferred()
            answered[record.url] = done

            def watched(method: str, *params: Any, _call: Any = record.peer.call, _done: Any = done) -> Any:
                def settle(result: Any) -> Any:
                    if method == "ListResources" and not _done.called:
                        _done.callback(None)
                    return result

                return _call(method, *params).addBoth(settle)

            record.peer.call = watched
        client = self.client(self.speaks_for(), credential_struct(self.user_cred))
        pending = client.list_resources(cached=False)
        await called
        clock.advance(0.5)
        release.callback(None)
        for done in answered.values():
            await done
        self.assertNoResult(pending)
        clock.advance(1.0)
        ad = value_of(await pending)
        statistics = {s["name"]: s for s in read_statistics(ad)}
        self.assertEqual([statistics[u]["status"] for u in self.am_urns], ["success", "success"])
        self.assertGreaterEqual(float(statistics[self.am_urns[1]]["elapsed"]), 0.5)
        self.assertEqual((statistics[dead_urn]["status"], statistics[dead_urn]["code"]), ("error", "10"))
        self.assertIn("cannot connect", statistics[dead_urn]["exception"])
        self.assertEqual((statistics[hang_urn]["status"], statistics[hang_urn]["code"]), ("timeout", "8"))
        self.assertGreaterEqual(float(statistics[hang_urn]["elapsed"]), 1.5)
