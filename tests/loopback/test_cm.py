"""
End to end over TLS: the ProtoGENI component manager API of an aggregate
whose identity and trust root come from the GENI reference clearinghouse
(tests/fixtures/gcf), with its credentials as ProtoGENI clients send them
(plain strings), and tickets checked by xmlsec1 as the reference tools
call it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from geniam.booking.values import Slot
from geniam.cli.call import answer_code, cm_url
from geniam.client import AMClient, value_of
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from geniam.trust.identity import Identity
from tests.domains import copied_domain
from tests.fixturepaths import GCF as FIXTURES
from tests.test_demo import make_domain
from tests.loopback.test_interop import KEY, NOW, SLICE, FixtureAggregate

XMLSEC1 = shutil.which("xmlsec1")


class ComponentManagerLoopbackTests(FixtureAggregate):
    """alice walks her slice through the diagram over the CM endpoint."""

    def cm(self, name: str = "alice", path: str = "protogeni/xmlrpc/cm/2.0") -> AMClient:
        identity = Identity.from_files(FIXTURES / f"{name}-cert.pem", FIXTURES / f"{name}-key.pem")
        client = AMClient(reactor, self.service.url + path, identity, self.roots)
        self.addCleanup(client.close)
        return client

    async def call(self, client: AMClient, method: str, **args: Any) -> dict[str, Any]:
        reply: dict[str, Any] = await client.call(method, args)
        self.assertEqual(sorted(reply), ["code", "output", "value"])
        return reply

    async def ok(self, client: AMClient, method: str, **args: Any) -> Any:
        reply = await self.call(client, method, **args)
        self.assertEqual(reply["code"], 0, reply["output"])
        return reply["value"]

    async def test_walk(self) -> None:
        """GetTicket, Resolve, RedeemTicket (a v3-visible sliver), the sliver credential, DeleteSlice."""
        await self.start()
        cm = self.cm()
        creds = [(FIXTURES / "fixture-slicecred.xml").read_text()]
        version = await self.ok(cm, "GetVersion")
        self.assertEqual(version["api"], 2.0)
        rspec = build_request(NOW + 3600, NOW + 7200)
        ticket = await self.ok(cm, "GetTicket", slice_urn=SLICE, credentials=creds, rspec=rspec)
        self.assertIn("<type>ticket</type>", ticket)
        self.assertIn(SLICE, ticket)
        resolved = await self.ok(cm, "Resolve", urn=SLICE, credentials=creds)
        self.assertNotIn("sliver_urn", resolved)
        copy = await self.ok(cm, "Resolve", urn=resolved["ticket_urn"], credentials=creds)
        self.assertEqual(copy, ticket)
        if XMLSEC1 is not None:
            path = Path(self.mktemp())
            path.write_text(ticket)
            done = subprocess.run(
                [XMLSEC1, "--verify", "--node-id", "Sig_ref0", "--trusted-pem", str(FIXTURES / "ch-cert.pem"), str(path)],
                capture_output=True, text=True, timeout=60,
            )
            self.assertTrue((done.stderr + done.stdout).strip().startswith("OK"), done.stderr)
        sliver_credential, manifest = await self.ok(
            cm, "RedeemTicket", slice_urn=SLICE, ticket=ticket, credentials=creds, keys=[{"type": "ssh", "key": KEY}]
        )
        self.assertIn("<rspec", manifest)
        replay = await self.call(cm, "RedeemTicket", slice_urn=SLICE, ticket=ticket, credentials=creds)
        self.assertEqual(replay["code"], GeniCode.FORBIDDEN)
        resolved = await self.ok(cm, "Resolve", urn=SLICE, credentials=creds)
        self.assertNotIn("ticket_urn", resolved)
        sliver_urn = resolved["sliver_urn"]
        # The sliver credential the AM minted is accepted by it in place of the slice credential.
        described = await self.ok(cm, "Resolve", urn=sliver_urn, credentials=[sliver_credential])
        self.assertEqual(described["expires"], "2026-11-22T14:00:00Z")
        v3 = self.omni_user("alice", "fixture-slicecred.xml")
        status = value_of(await v3.status([SLICE]))
        self.assertEqual([s["geni_sliver_urn"] for s in status["geni_slivers"]], [sliver_urn])
        self.assertEqual(status["geni_slivers"][0]["geni_allocation_status"], "geni_provisioned")
        self.assertIs(await self.ok(cm, "DeleteSlice", slice_urn=SLICE, credentials=creds), True)
        resolved = await self.ok(cm, "Resolve", urn=SLICE, credentials=creds)
        self.assertEqual(resolved["state"], "neither sliver nor ticket")

    async def test_bad_input_is_a_struct(self) -> None:
        """Malformed calls answer {code, value, output}, never a fault; the second path is the same API."""
        await self.start()
        cm = self.cm(path="protogeni/xmlrpc/cm")
        creds = [(FIXTURES / "fixture-slicecred.xml").read_text()]
        reply = await cm.call("GetTicket", "not a struct")
        self.assertEqual(reply["code"], GeniCode.BADARGS)
        reply = await self.call(cm, "GetTicket", slice_urn=SLICE, credentials=creds, rspec="<rspec")
        self.assertEqual(reply["code"], GeniCode.BADARGS)
        reply = await self.call(cm, "RedeemTicket", slice_urn=SLICE, credentials=creds, ticket="<signed-credential/>")
        self.assertEqual(reply["code"], GeniCode.FORBIDDEN)
        reply = await self.call(cm, "GetTicket", slice_urn=SLICE, rspec=build_request(NOW + 3600, NOW + 7200))
        self.assertEqual(reply["code"], GeniCode.FORBIDDEN)
        self.assertEqual(await self.service.store.count(), 0)

    async def test_huge_rspec(self) -> None:
        """
        An RSpec past the parser's bounds gets TOOBIG saying so; a body past
        the server's limit is refused before it is read. Neither changes anything.
        """
        await self.start()
        cm = self.cm()
        creds = [(FIXTURES / "fixture-slicecred.xml").read_text()]
        request = build_request(NOW + 3600, NOW + 7200)
        many = request.replace("</rspec>", "<x/>" * 150_000 + "</rspec>")
        reply = await self.call(cm, "GetTicket", slice_urn=SLICE, credentials=creds, rspec=many)
        self.assertEqual(reply["code"], GeniCode.TOOBIG, reply["output"])
        self.assertIn("elements", reply["output"])
        self.assertNotIn("Traceback", reply["output"])
        oversized = request.replace("</rspec>", "<!--" + "x" * (5 * 1024 * 1024) + "--></rspec>")
        with self.assertRaises(GeniError) as raised:
            await cm.call("GetTicket", {"slice_urn": SLICE, "credentials": creds, "rspec": oversized})
        self.assertIn("too large", raised.exception.output)
        self.assertEqual(await self.service.store.count(), 0)
        resolved = await self.ok(cm, "Resolve", urn=SLICE, credentials=creds)
        self.assertEqual(resolved["state"], "neither sliver nor ticket")


class TicketRaceTests(TestCase):
    """Over TLS: a ticket, an AM API v3 Allocate and another slice's ticket for one slot; exactly one wins."""

    timeout = 60

    async def test_exactly_one_wins(self) -> None:
        """All three calls are made before any answer comes; one succeeds, the others get UNAVAILABLE, one booking is live."""
        folder = copied_domain(self, "demo", make_domain)
        federation = LoopbackFederation(folder, reactor, aggregate_names=("am1",), user_names=("alice", "bob"), with_agents=False)
        self.addCleanup(lambda: Deferred.fromCoroutine(federation.stop()))
        await federation.start()
        start = reactor.seconds() + 3600
        rspec = build_request(start, start + 3600)

        def cm(user: str) -> AMClient:
            client = AMClient(reactor, cm_url(federation.url("am1")), federation.domain.user(user), federation.domain.roots())
            self.addCleanup(client.close)
            return client

        v3 = federation.client("bob", "am1", (federation.user_credential("bob"), federation.slice_credential("v3", "bob")))
        calls = [
            cm("alice").call("GetTicket", {"slice_urn": federation.slice_urn("tickets"), "rspec": rspec,
                                           "credentials": [federation.slice_credential("tickets", "alice")]}),
            v3.allocate(federation.slice_urn("v3"), rspec),
            cm("bob").call("GetTicket", {"slice_urn": federation.slice_urn("other"), "rspec": build_request(start + 1800, start + 5400),
                                         "credentials": [federation.slice_credential("other", "bob")]}),
        ]
        answers = await gatherResults(calls)
        codes = [answer_code(answer) for answer in answers]
        self.assertEqual(sorted(codes), [0, GeniCode.UNAVAILABLE, GeniCode.UNAVAILABLE], answers)
        live = await federation.aggregates["am1"].resource_manager._store.list_live(Slot(start - 3600, start + 7200))
        self.assertEqual(len(live), 1)
