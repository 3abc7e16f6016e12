"""
Hostile certificate chains against the credential verifier and the
aggregate manager: floods in a credential's owner, in a signature's
KeyInfo and in a TLS client's chain are refused at once with a reason;
a verification that overruns its deadline is refused; and an aggregate
keeps answering other callers while one sends hostile credentials.
"""

from __future__ import annotations

import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.client import AMClient, value_of
from geniam.errors import GeniCode, GeniError
from geniam.loopback import LoopbackFederation
from geniam.trust.gid import GID
from geniam.trust.identity import Identity
from geniam.trust.mint import issue_speaks_for, slice_credential
from geniam.trust.paths import Abandoned
from geniam.trust.verifier import DEFAULT_DEADLINE, CredentialVerifier
from tests.domains import copied_domain
from tests.hostile_chains import (
    flood,
    keyinfo_flood_credential,
    owner_flood_credential,
    tampered_owner_credential,
)
from tests.trust.test_credential_fixtures import NOW, SLICE_URN, YEAR, clock_at, world
from tests.trust.test_verifier import FakeThreadPool, ThreadReactor

REPEATED = "repeated issuers are refused"


@lru_cache(maxsize=None)
def alice_slice() -> str:
    """alice's slice credential for exp1, all privileges delegatable."""
    w = world()
    return slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)


def failed_names(report: Any) -> list[str]:
    return [check.name for check in report.failures]


class CredentialFloodTests(SynchronousTestCase):
    """Floods carried by a credential are refused, and nothing after a failed signature is checked."""

    def verifier(self) -> CredentialVerifier:
        return CredentialVerifier(world().roots, clock_at(), cache_size=0)

    def test_owner_flood_in_valid_delegation(self) -> None:
        """A validly signed delegation to a flooded owner fails only its owner check, as repeated issuers."""
        for count in (4, 8, 15):
            document = owner_flood_credential(alice_slice(), world().alice, count, NOW)
            report = self.verifier().verify_credential(document, NOW)
            self.assertEqual(failed_names(report), ["owner certificate ref1"], count)
            self.assertIn(REPEATED, report.failures[0].reason)

    def test_nothing_checked_after_failed_signature(self) -> None:
        """A flooded owner swapped into a signed level: the signature fails and no certificate of it is checked."""
        document = tampered_owner_credential(alice_slice(), 15, NOW)
        report = self.verifier().verify_credential(document, NOW)
        self.assertEqual(failed_names(report), ["signature ref0"])
        checked = [check.name for check in report.checks]
        self.assertEqual(checked, ["parse", "signature ref0"])

    def test_keyinfo_flood(self) -> None:
        """Levels signed with a flood in KeyInfo stop at their signer, refused as repeated issuers."""
        document = keyinfo_flood_credential(alice_slice(), world().alice, 3, 7, NOW)
        report = self.verifier().verify_credential(document, NOW)
        [failure] = report.failures
        tag = report.credential.credential.xml_id  # type: ignore[union-attr]
        self.assertEqual(failure.name, f"signer {tag}")
        self.assertIn(REPEATED, failure.reason)
        self.assertEqual([check.name for check in report.checks], ["parse", f"signature {tag}", f"signer {tag}"])

    def test_authorize_refuses_with_reason(self) -> None:
        """authorize refuses a flooded credential with CREDENTIAL_INVALID naming the repeated issuers."""
        hostile = flood(15, NOW)
        document = owner_flood_credential(alice_slice(), world().alice, 15, NOW)
        d = self.verifier().authorize(hostile.gid, [document], "Status", SLICE_URN)
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn(REPEATED, error.output)

    def test_speaks_for_keyinfo_flood(self) -> None:
        """A speaks-for credential signed with a flood in KeyInfo is refused as repeated issuers."""
        w = world()
        hostile = flood(7, NOW)
        document = issue_speaks_for(hostile.leaf, w.tool.gid, NOW + YEAR)
        d = self.verifier().authorize(
            w.tool.gid, [document, alice_slice()], "Status", SLICE_URN, {"geni_speaking_for": hostile.gid.urn}
        )
        error = self.failureResultOf(d, GeniError).value
        self.assertIn(REPEATED, error.output)


class DeadlineTests(SynchronousTestCase):
    """Every authorisation has a deadline; at shutdown work in flight stops."""

    def setUp(self) -> None:
        self.pool = FakeThreadPool()
        self.reactor = ThreadReactor()
        self.reactor.advance(NOW)

    def verifier(self, **kwargs: Any) -> CredentialVerifier:
        return CredentialVerifier(
            world().roots, self.reactor, threadpool=self.pool, reactor=self.reactor, **kwargs  # type: ignore[arg-type]
        )

    def test_deadline_refuses_with_timedout(self) -> None:
        """A verification not done by its deadline is refused with TIMEDOUT; the late work then stops at once."""
        verifier = self.verifier(deadline=2.0)
        d = verifier.authorize(world().alice.gid, [alice_slice()], "Status", SLICE_URN)
        self.reactor.advance(1.9)
        self.assertNoResult(d)
        self.reactor.advance(0.2)
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.TIMEDOUT)
        self.assertEqual(error.output, "credential verification took longer than 2 s and was refused")
        [(_, late_work, args)] = self.pool.pending
        self.assertRaises(Abandoned, late_work, *args)

    def test_default_deadline(self) -> None:
        """The default deadline is a few seconds."""
        verifier = self.verifier()
        self.assertEqual(verifier.deadline, DEFAULT_DEADLINE)
        d = verifier.authorize(world().alice.gid, [alice_slice()], "Status", SLICE_URN)
        self.reactor.advance(DEFAULT_DEADLINE)
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.TIMEDOUT)

    def test_in_time_is_granted(self) -> None:
        """Work done before the deadline is granted, and the deadline timer is gone."""
        d = self.verifier().authorize(world().alice.gid, [alice_slice()], "Status", SLICE_URN)
        self.pool.run()
        self.assertEqual(self.successResultOf(d).caller_urn, world().alice.gid.urn)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop_refuses_work_in_flight(self) -> None:
        """After stop, work in flight is refused with SERVERBUSY and so are new calls."""
        verifier = self.verifier()
        d = verifier.authorize(world().alice.gid, [alice_slice()], "Status", SLICE_URN)
        verifier.stop()
        self.pool.run()
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.SERVERBUSY)
        later = verifier.authorize(world().alice.gid, [alice_slice()], "Status", SLICE_URN)
        self.assertEqual(self.failureResultOf(later, GeniError).value.code, GeniCode.SERVERBUSY)


def make_domain(folder: Path) -> None:
    """Make a trust domain with am1, alice and bob in C{folder}."""
    clock = Clock()
    clock.advance(time.time() - 3600)
    LoopbackFederation(folder, reactor, clock, aggregate_names=("am1",), user_names=("alice", "bob"))


class AggregateUnderFloodTests(TestCase):
    """Over TLS on loopback: hostile chains are refused and other callers are answered meanwhile."""

    async def start(self) -> LoopbackFederation:
        folder = copied_domain(self, "hostile", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        fed = LoopbackFederation(folder, reactor, self.clock, aggregate_names=("am1",), user_names=("alice", "bob"))
        await fed.start()
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        return fed

    async def test_hostile_credentials_and_an_honest_caller(self) -> None:
        """Alice floods the AM with hostile credentials; bob's ListResources is answered, alice is refused."""
        fed = await self.start()
        now = self.clock.seconds()
        alice = fed.domain.user("alice")
        mine = fed.slice_credential("exp1", "alice")
        hostile = [
            owner_flood_credential(mine, alice, 15, now),
            tampered_owner_credential(mine, 15, now),
            keyinfo_flood_credential(mine, alice, 4, 7, now),
        ]
        attacker = fed.client("alice", "am1")
        attacks = [
            attacker.status([fed.slice_urn("exp1")], credentials=[document]) for document in hostile for _ in range(4)
        ]
        bob = fed.client("bob", "am1", (fed.user_credential("bob"),))
        honest = bob.list_resources()
        results = await DeferredList([honest, *attacks], consumeErrors=True)
        self.assertTrue(all(ok for ok, _ in results), results)
        self.assertIn("<rspec", value_of(results[0][1]))
        codes = []
        for _, struct in results[1:]:
            with self.assertRaises(GeniError) as cm:
                value_of(struct)
            codes.append(cm.exception.code)
            self.assertTrue(REPEATED in cm.exception.output or "does not match" in cm.exception.output, cm.exception.output)
        self.assertEqual(set(codes), {GeniCode.CREDENTIAL_INVALID})

    async def test_tls_client_chain_flood(self) -> None:
        """A client whose TLS chain carries a flood is refused with a GENI error naming the repeated issuers."""
        fed = await self.start()
        alice = fed.domain.user("alice")
        chain = (*alice.gid.chain, *flood(15, self.clock.seconds()).certificates)
        flooded = Identity(GID(alice.gid.certificate, chain), alice.private_key)
        client = AMClient(reactor, fed.url("am1"), flooded, fed.domain.roots(), (fed.user_credential("alice"),))
        self.addCleanup(client.close)
        struct = await client.get_version()
        with self.assertRaises(GeniError) as cm:
            value_of(struct)
        self.assertEqual(cm.exception.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn(REPEATED, cm.exception.output)
        honest = fed.client("bob", "am1", (fed.user_credential("bob"),))
        self.assertEqual(value_of(await honest.get_version())["geni_api"], 3)

    async def test_stopping_stops_credential_checks(self) -> None:
        """A stopped AM refuses credential checks at once (SERVERBUSY) instead of queueing them on its joined pool."""
        fed = await self.start()
        service = fed.aggregates["am1"]
        await service.stopService()
        alice = fed.domain.user("alice")
        d = service.verifier.authorize(
            alice.gid, [fed.slice_credential("exp1", "alice")], "Status", fed.slice_urn("exp1")
        )
        error = self.failureResultOf(d, GeniError).value
        self.assertEqual(error.code, GeniCode.SERVERBUSY)
        self.assertIn("shutting down", error.output)
