"""
Interoperability with what real GENI users present and run: certificates
and credentials minted by the GENI reference clearinghouse (tests/fixtures/gcf)
and the geni-lib client (its C{geni.minigcf.amapi3} module, over the
C{requests} library in a worker thread).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.agent.inprocess import InProcessGateway
from geniam.client import AMClient, credential_struct, value_of
from geniam.errors import GeniCode, GeniError
from geniam.rspec.request import build_request
from geniam.store.sqlite import SQLiteStore
from geniam.tap.am import AggregateService
from geniam.tap.common import ServerTrust
from geniam.timeutil import parse_time
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity

from tests.fixturepaths import GCF as FIXTURES
NOW = parse_time("2026-11-22T12:00:00Z")
SLICE = "urn:publicid:IDN+geni:gpo:gcf+slice+fixture"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOq5P0wVtV0bWbFQqg8Xn1K1JmHhJ7m1fQ1b3c7m5a1b alice@laptop"

try:
    from geni.minigcf import amapi3
except ImportError as e:  # pragma: no cover - the test extra installs it
    amapi3 = None
    GENILIB_MISSING = f"geni-lib is not installed: {e}"
else:
    GENILIB_MISSING = ""


class FixtureAggregate(TestCase):
    """Starts an aggregate whose identity and trust root come from the GENI reference clearinghouse."""

    async def start(self) -> AggregateService:
        folder = Path(self.mktemp())
        (folder / "roots").mkdir(parents=True)
        shutil.copy(FIXTURES / "ch-cert.pem", folder / "roots" / "ch-cert.pem")
        self.clock = Clock()
        self.clock.advance(NOW)
        roots = TrustRoots.from_directory(folder / "roots")
        identity = Identity.from_files(FIXTURES / "am1-cert.pem", FIXTURES / "am1-key.pem")
        self.gateway = InProcessGateway(clock=self.clock)
        service = AggregateService(
            reactor,
            ServerTrust(identity, roots, folder / "roots"),
            SQLiteStore(str(folder / "am.sqlite"), reactor=reactor),
            self.gateway,
            0,
            "127.0.0.1",
            clock=self.clock,
        )
        service.startService()
        await service.when_started()
        self.addCleanup(service.stopService)
        self.roots = roots
        self.service = service
        return service

    def omni_user(self, name: str, *credential_files: str) -> AMClient:
        identity = Identity.from_files(FIXTURES / f"{name}-cert.pem", FIXTURES / f"{name}-key.pem")
        creds = [(FIXTURES / f).read_text() for f in credential_files]
        client = AMClient(reactor, self.service.url, identity, self.roots, creds)
        self.addCleanup(client.close)
        return client


class FixtureAggregateTests(FixtureAggregate):
    """An aggregate whose identity and trust root come from the GENI reference clearinghouse."""

    async def test_alice_with_reference_credentials(self) -> None:
        """alice's user and slice credentials, as omni sends them, book the island."""
        await self.start()
        alice = self.omni_user("alice", "alice-usercred.xml", "fixture-slicecred.xml")
        self.assertIn("<rspec", value_of(await alice.list_resources()))
        allocated = value_of(await alice.allocate(SLICE, build_request(NOW + 3600, NOW + 7200)))
        self.assertEqual(allocated["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")

    async def test_bob_with_delegated_credential(self) -> None:
        """bob acts on alice's slice with the credential she delegated to him; alice's own does not work for bob."""
        await self.start()
        bob = self.omni_user("bob", "bob-delegated-fixture-slicecred.xml")
        status = await bob.allocate(SLICE, build_request(NOW + 3600, NOW + 7200))
        self.assertEqual(status["code"]["geni_code"], 0, status.get("output"))
        impostor = self.omni_user("bob", "fixture-slicecred.xml")
        refused = await impostor.allocate(SLICE, build_request(NOW + 9000, NOW + 9900))
        self.assertNotEqual(refused["code"]["geni_code"], 0)

    async def allocate_as(self, client: AMClient, struct: dict[str, str], start: float) -> Any:
        rspec = build_request(start, start + 600)
        return await client.call("Allocate", SLICE, [struct], rspec, {})

    async def test_delegated_credential_labelled_geni_unknown(self) -> None:
        """omni's label for a delegated credential, geni_unknown, is read for the document's real type."""
        await self.start()
        bob = self.omni_user("bob")
        delegated = (FIXTURES / "bob-delegated-fixture-slicecred.xml").read_text()
        for version in ("3", "1"):
            struct = credential_struct(delegated, "geni_unknown", version)
            allocated = value_of(await self.allocate_as(bob, struct, NOW + 3600 * int(version)))
            self.assertEqual(allocated["geni_slivers"][0]["geni_allocation_status"], "geni_allocated")

    async def test_made_up_types_still_refused(self) -> None:
        """Any other unknown type is skipped and named; geni_unknown over a document of an unknown type is invalid."""
        await self.start()
        bob = self.omni_user("bob")
        delegated = (FIXTURES / "bob-delegated-fixture-slicecred.xml").read_text()
        with self.assertRaises(GeniError) as made_up:
            value_of(await self.allocate_as(bob, credential_struct(delegated, "geni_delegated", "3"), NOW + 3600))
        self.assertEqual(made_up.exception.code, GeniCode.FORBIDDEN)
        self.assertIn("unknown geni_type 'geni_delegated'", made_up.exception.output)
        retyped = delegated.replace("<type>privilege</type>", "<type>bogus</type>")
        self.assertNotEqual(retyped, delegated)
        with self.assertRaises(GeniError) as bogus:
            value_of(await self.allocate_as(bob, credential_struct(retyped, "geni_unknown", "3"), NOW + 3600))
        self.assertEqual(bogus.exception.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn("unsupported credential type 'bogus'", bogus.exception.output)
        self.assertEqual(await self.service.store.count(), 0)

    async def test_slice_credential_sent_as_geni_abac(self) -> None:
        """A valid slice credential labelled geni_abac is refused with what was sent and why it was skipped."""
        await self.start()
        alice = self.omni_user("alice")
        credential = (FIXTURES / "fixture-slicecred.xml").read_text()
        with self.assertRaises(GeniError) as refused:
            value_of(await self.allocate_as(alice, credential_struct(credential, "geni_abac", "1"), NOW + 3600))
        self.assertEqual(refused.exception.code, GeniCode.FORBIDDEN)
        output = refused.exception.output
        self.assertNotIn("no credentials were presented", output)
        self.assertIn("credential #1: sent as geni_abac, but it is a geni_sfa privilege credential for " + SLICE, output)
        self.assertIn("send it with geni_type geni_sfa", output)

    async def test_genilib_lifecycle(self) -> None:
        """geni-lib's AM API v3 client runs GetVersion, Allocate, Provision, PerformOperationalAction and Delete."""
        if amapi3 is None:
            self.skipTest(GENILIB_MISSING)
        await self.start()
        url = self.service.url
        cert, key = str(FIXTURES / "alice-cert.pem"), str(FIXTURES / "alice-key.pem")
        cred = SimpleNamespace(path=str(FIXTURES / "fixture-slicecred.xml"), type="geni_sfa", version="3")

        def call(function: Any, *args: Any) -> Deferred[Any]:
            return threads.deferToThread(function, url, False, cert, key, *args)

        # geni-lib's getversion passes its options straight to xmlrpc dumps,
        # which wants the parameter tuple itself.
        version = await call(amapi3.getversion, ({},))
        self.assertEqual(version["value"]["geni_api"], 3)
        allocated = await call(amapi3.allocate, [cred], SLICE, build_request(NOW + 60, NOW + 3600))
        sliver = value_of(allocated)["geni_slivers"][0]["geni_sliver_urn"]
        users = [{"urn": "urn:publicid:IDN+geni:gpo:gcf+user+alice", "keys": [KEY]}]
        provisioned = await call(
            amapi3.provision, [cred], [sliver], {"geni_rspec_version": {"type": "GENI", "version": "3"}, "geni_users": users}
        )
        self.assertEqual(value_of(provisioned)["geni_slivers"][0]["geni_allocation_status"], "geni_provisioned")
        self.clock.advance(61)
        await self.service.resource_manager.sweep()
        self.assertEqual(self.gateway.users, [KEY])
        stopped = await call(amapi3.poa, [cred], [sliver], "geni_stop")
        self.assertEqual(value_of(stopped)[0]["geni_operational_status"], "geni_notready")
        deleted = await call(amapi3.delete, [cred], [SLICE])
        self.assertEqual(value_of(deleted)[0]["geni_allocation_status"], "geni_unallocated")
