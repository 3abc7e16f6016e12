"""
Tests for L{geniam.trust.verifier} and L{geniam.trust.privileges}: chain
verification, call-level authorisation, the tampering matrix, the
verification cache and the thread pool.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust.certs import make_identity
from geniam.trust.credential import GENI_ABAC, as_struct
from geniam.trust.mint import delegate_credential, issue_credential, slice_credential, user_credential
from geniam.trust.privileges import DEFAULT_TABLE, MethodRule, PrivilegeTable, SLICE, USER
from geniam.trust.verifier import CredentialVerifier
from tests.trust.test_credential_fixtures import (
    DAY,
    NOW,
    OTHER_SLICE_URN,
    SLICE_URN,
    YEAR,
    authorize,
    clock_at,
    refuse,
    world,
)

CONTROL = [("control", True)]


@lru_cache(maxsize=None)
def alice_slice() -> str:
    """alice's slice credential for exp1 (all SFA slice privileges, delegatable), valid a year."""
    w = world()
    return slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR)


@lru_cache(maxsize=None)
def alice_user() -> str:
    """alice's user credential."""
    w = world()
    return user_credential(w.sa, w.alice.gid, NOW + YEAR)


@lru_cache(maxsize=None)
def three_levels() -> str:
    """exp1 from the SA to alice, delegated to bob, then to carol, with shrinking expiry."""
    w = world()
    root = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", True), ("info", True)], NOW + YEAR)
    middle = delegate_credential(root, w.alice, w.bob.gid, [("control", True), ("info", False)], NOW + 200 * DAY)
    return delegate_credential(middle, w.bob, w.carol.gid, [("control", False)], NOW + 100 * DAY)


def verifier(clock: Clock | None = None, **kwargs: Any) -> CredentialVerifier:
    """A verifier trusting only the test SA."""
    return CredentialVerifier(world().roots, clock or clock_at(), **kwargs)


class ChainTests(SynchronousTestCase):
    """Valid chains grant what they say, to whom they say."""

    def test_slice_credential(self) -> None:
        """The owner of a slice credential may call every slice method on that slice."""
        w = world()
        v = verifier()
        for method in ("Allocate", "Provision", "PerformOperationalAction", "Describe", "Status", "Renew", "Delete", "Shutdown"):
            grant = authorize(self, v, w.alice.gid, [as_struct(alice_slice())], method, SLICE_URN)
            self.assertEqual(grant.caller_urn, w.alice.gid.urn)
            self.assertIs(grant.caller, w.alice.gid)
            self.assertEqual(grant.expires, NOW + YEAR)
            self.assertIsNone(grant.speaks_for)

    def test_target_compared_case_insensitively(self) -> None:
        """The slice URN of the call matches regardless of the authority's case."""
        w = world()
        grant = authorize(self, verifier(), w.alice.gid, [alice_slice()], "Allocate", SLICE_URN.replace("geni:example", "GENI:Example"))
        self.assertEqual(len(grant.credentials), 1)

    def test_three_level_chain(self) -> None:
        """A chain SA -> alice -> bob -> carol grants carol control until the earliest expiry."""
        w = world()
        grant = authorize(self, verifier(), w.carol.gid, [as_struct(three_levels())], "Allocate", SLICE_URN)
        self.assertEqual(grant.expires, NOW + 100 * DAY)
        self.assertEqual(grant.privileges, frozenset({"control"}))
        self.assertEqual(len(grant.credentials[0].signed.levels()), 3)

    def test_three_level_not_for_intermediates(self) -> None:
        """alice and bob cannot use carol's credential."""
        w = world()
        for caller in (w.alice, w.bob):
            error = refuse(self, verifier(), caller.gid, [three_levels()], "Allocate", SLICE_URN)
            self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)

    def test_user_credential_for_list_resources(self) -> None:
        """ListResources takes the caller's user credential."""
        w = world()
        grant = authorize(self, verifier(), w.alice.gid, [alice_user()], "ListResources")
        self.assertEqual(grant.privileges, frozenset({"refresh", "resolve", "info"}))

    def test_get_version_needs_nothing(self) -> None:
        """GetVersion needs no credential; the grant never expires."""
        w = world()
        grant = authorize(self, verifier(), w.bob.gid, [], "GetVersion")
        self.assertEqual(grant.credentials, ())
        self.assertEqual(grant.expires, float("inf"))

    def test_wildcard_privilege(self) -> None:
        """A ProtoGENI-style '*' privilege allows every slice method."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("*", False)], NOW + YEAR)
        for method in ("Allocate", "Shutdown", "Delete"):
            authorize(self, verifier(), w.alice.gid, [xml], method, SLICE_URN)

    def test_best_of_several(self) -> None:
        """With several granting credentials the longest-lasting comes first and sets the expiry."""
        w = world()
        short = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + DAY)
        grant = authorize(self, verifier(), w.alice.gid, [short, alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual(len(grant.credentials), 2)
        self.assertEqual(grant.expires, NOW + YEAR)

    def test_bad_credential_does_not_spoil_good_one(self) -> None:
        """A malformed or foreign credential next to a valid one does not prevent the grant."""
        w = world()
        grant = authorize(
            self,
            verifier(),
            w.alice.gid,
            ["<junk", {"geni_type": "unknown", "geni_version": "1", "geni_value": "x"}, alice_user(), alice_slice()],
            "Allocate",
            SLICE_URN,
        )
        self.assertEqual(len(grant.credentials), 1)

    def test_sha1_credentials(self) -> None:
        """Credentials signed with RSA-SHA1 (the reference tools' way) are accepted."""
        w = world()
        xml = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + YEAR, algorithm="sha1")
        authorize(self, verifier(), w.alice.gid, [xml], "Allocate", SLICE_URN)


class CallRefusalTests(SynchronousTestCase):
    """Call-level checks refuse with the right code."""

    def test_user_credential_as_slice_credential(self) -> None:
        """A user credential used where a slice credential is needed is a mismatch."""
        w = world()
        error = refuse(self, verifier(), w.alice.gid, [alice_user()], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("needs a slice credential", error.output)

    def test_slice_credential_as_user_credential(self) -> None:
        """ListResources does not take a slice credential."""
        w = world()
        error = refuse(self, verifier(), w.alice.gid, [alice_slice()], "ListResources")
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("needs a user credential", error.output)

    def test_other_users_user_credential(self) -> None:
        """alice's user credential is no use to bob."""
        w = world()
        error = refuse(self, verifier(), w.bob.gid, [alice_user()], "ListResources")
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)

    def test_wrong_slice(self) -> None:
        """A credential for exp1 does not work on exp2."""
        w = world()
        error = refuse(self, verifier(), w.alice.gid, [alice_slice()], "Allocate", OTHER_SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn(f"not {OTHER_SLICE_URN}", error.output)

    def test_missing_privilege(self) -> None:
        """A slice credential with only 'info' is forbidden to allocate."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("info", False)], NOW + YEAR)
        error = refuse(self, verifier(), w.alice.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.FORBIDDEN)
        self.assertIn("do not allow createsliver", error.output)

    def test_shutdown_needs_embed(self) -> None:
        """'control' allows allocation but not Shutdown, which needs 'embed'."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, CONTROL, NOW + YEAR)
        authorize(self, verifier(), w.alice.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(refuse(self, verifier(), w.alice.gid, [xml], "Shutdown", SLICE_URN).code, GeniCode.FORBIDDEN)

    def test_no_credentials(self) -> None:
        """No credentials: forbidden."""
        w = world()
        error = refuse(self, verifier(), w.alice.gid, [], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.FORBIDDEN)
        self.assertIn("no credentials were presented", error.output)

    def test_unknown_type_never_authorises(self) -> None:
        """A valid credential presented under an unknown geni_type is skipped (acceptance test 'badtype')."""
        w = world()
        struct = {"geni_type": "badtype", "geni_version": "3", "geni_value": alice_slice()}
        error = refuse(self, verifier(), w.alice.gid, [struct], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.FORBIDDEN)
        self.assertIn("unknown geni_type", error.output)

    def test_most_specific_failure_wins(self) -> None:
        """Among several failures the code of the one that got furthest is reported, all are named."""
        w = world()
        error = refuse(self, verifier(), w.alice.gid, ["<junk", alice_slice()], "Allocate", OTHER_SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertIn("credential #1", error.output)
        self.assertIn("credential #2", error.output)

    def test_bad_arguments(self) -> None:
        """Unknown methods are forbidden; slice methods need a slice URN."""
        w = world()
        self.assertEqual(refuse(self, verifier(), w.alice.gid, [], "Frobnicate", SLICE_URN).code, GeniCode.FORBIDDEN)
        self.assertEqual(refuse(self, verifier(), w.alice.gid, [alice_slice()], "Allocate").code, GeniCode.BADARGS)
        self.assertEqual(
            refuse(self, verifier(), w.alice.gid, [alice_slice()], "Allocate", w.alice.gid.urn).code, GeniCode.BADARGS
        )
        self.assertEqual(
            refuse(self, verifier(), w.alice.gid, "not a list", "Allocate", SLICE_URN).code,  # type: ignore[arg-type]
            GeniCode.BADARGS,
        )


class TamperingTests(SynchronousTestCase):
    """The tampering matrix: each altered or ill-formed chain is refused with the right reason."""

    def assert_refused(self, caller: Any, credential: str, code: GeniCode, reason: str, method: str = "Allocate") -> None:
        """authorize refuses C{credential} for C{caller} with C{code}, mentioning C{reason}."""
        target = SLICE_URN if method != "ListResources" else None
        error = refuse(self, verifier(), caller.gid, [credential], method, target)
        self.assertEqual(error.code, code, error.output)
        self.assertIn(reason, error.output)

    def test_changed_privilege(self) -> None:
        """Adding a privilege to a signed credential breaks its digest."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("info", False)], NOW + YEAR)
        self.assert_refused(w.alice, xml.replace("<name>info</name>", "<name>control</name>"), GeniCode.CREDENTIAL_INVALID, "digest")

    def test_changed_can_delegate(self) -> None:
        """Making a privilege delegatable breaks the digest."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", False)], NOW + YEAR)
        changed = xml.replace("<can_delegate>false</can_delegate>", "<can_delegate>true</can_delegate>")
        self.assert_refused(w.alice, changed, GeniCode.CREDENTIAL_INVALID, "digest")

    def test_changed_expiry(self) -> None:
        """Extending the expiry breaks the digest."""
        w = world()
        xml = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + DAY)
        from geniam.timeutil import format_time

        changed = xml.replace(format_time(NOW + DAY), format_time(NOW + 10 * YEAR))
        self.assert_refused(w.alice, changed, GeniCode.CREDENTIAL_INVALID, "digest")

    def test_changed_owner(self) -> None:
        """Putting bob's certificate and URN in as owner breaks the digest."""
        w = world()
        changed = alice_slice().replace(
            w.alice.gid.to_pem(with_chain=False).decode(), w.bob.gid.to_pem(with_chain=False).decode()
        ).replace(f"<owner_urn>{w.alice.gid.urn}", f"<owner_urn>{w.bob.gid.urn}")
        self.assertNotEqual(changed, alice_slice())
        self.assert_refused(w.bob, changed, GeniCode.CREDENTIAL_INVALID, "digest")

    def test_changed_target(self) -> None:
        """Pointing the credential at another slice breaks the digest."""
        w = world()
        changed = alice_slice().replace(
            w.slice.gid.to_pem(with_chain=False).decode(), w.other_slice.gid.to_pem(with_chain=False).decode()
        ).replace(f"<target_urn>{SLICE_URN}", f"<target_urn>{OTHER_SLICE_URN}")
        error = refuse(self, verifier(), w.alice.gid, [changed], "Allocate", OTHER_SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn("digest", error.output)

    def test_changed_serial(self) -> None:
        """Changing the serial breaks the digest."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, CONTROL, NOW + YEAR, serial="17")
        self.assert_refused(w.alice, xml.replace("<serial>17</serial>", "<serial>18</serial>"), GeniCode.CREDENTIAL_INVALID, "digest")

    def test_untrusted_key_same_name(self) -> None:
        """A credential signed by an authority with the SA's name and URN but another key is untrusted."""
        w = world()
        xml = slice_credential(w.impostor, w.alice.gid, w.slice.gid, NOW + YEAR)
        self.assert_refused(w.alice, xml, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "urn:publicid:IDN+geni:example+authority+sa")

    def test_expired(self) -> None:
        """An expired credential is refused as expired."""
        w = world()
        xml = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW - 1)
        self.assert_refused(w.alice, xml, GeniCode.CREDENTIAL_EXPIRED, "expired at")

    def test_expired_parent(self) -> None:
        """An expired parent makes the chain expired even if the delegation claims to last longer."""
        w = world()
        parent = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW - 1)
        child = delegate_credential(parent, w.alice, w.bob.gid, CONTROL, NOW + DAY, enforce=False)
        self.assert_refused(w.bob, child, GeniCode.CREDENTIAL_EXPIRED, "expiry ref0")

    def test_expired_grandparent(self) -> None:
        """Expiry is checked at every level of a three-level chain."""
        w = world()
        root = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", True)], NOW - 1)
        middle = delegate_credential(root, w.alice, w.bob.gid, [("control", True)], NOW + DAY, enforce=False)
        leaf = delegate_credential(middle, w.bob, w.carol.gid, [("control", False)], NOW + DAY)
        self.assert_refused(w.carol, leaf, GeniCode.CREDENTIAL_EXPIRED, "expiry ref0")

    def test_expired_certificate(self) -> None:
        """An owner certificate past its validity makes the credential expired."""
        w = world()
        short = make_identity(w.sa, "urn:publicid:IDN+geni:example+user+dave", lifetime_seconds=60, now=NOW - 3600)
        xml = slice_credential(w.sa, short.gid, w.slice.gid, NOW + DAY)
        error = refuse(self, verifier(), short.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_EXPIRED)

    def test_delegation_widens_privileges(self) -> None:
        """A delegation adding a privilege the parent lacks is invalid."""
        w = world()
        parent = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("info", True)], NOW + YEAR)
        child = delegate_credential(parent, w.alice, w.bob.gid, [("info", False), ("control", False)], enforce=False)
        self.assert_refused(w.bob, child, GeniCode.CREDENTIAL_INVALID, "'control' is not held by the parent")

    def test_delegation_of_non_delegatable(self) -> None:
        """A delegation of a privilege the parent may not pass on is invalid."""
        w = world()
        parent = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", False)], NOW + YEAR)
        child = delegate_credential(parent, w.alice, w.bob.gid, CONTROL, enforce=False)
        self.assert_refused(w.bob, child, GeniCode.CREDENTIAL_INVALID, "'control' is not delegatable")

    def test_delegation_outlives_parent(self) -> None:
        """A delegation expiring after its parent is invalid."""
        w = world()
        parent = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + DAY)
        child = delegate_credential(parent, w.alice, w.bob.gid, CONTROL, NOW + 2 * DAY, enforce=False)
        self.assert_refused(w.bob, child, GeniCode.CREDENTIAL_INVALID, "after its parent")

    def test_delegation_by_non_owner(self) -> None:
        """carol cannot delegate alice's credential to bob."""
        w = world()
        child = delegate_credential(alice_slice(), w.carol, w.bob.gid, CONTROL, enforce=False)
        self.assert_refused(w.bob, child, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "not the parent's owner")

    def test_root_signed_by_user(self) -> None:
        """A user cannot issue herself a slice credential."""
        w = world()
        xml = slice_credential(w.alice, w.alice.gid, w.slice.gid, NOW + YEAR)
        self.assert_refused(w.alice, xml, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "not an authority")

    def test_root_signed_outside_namespace(self) -> None:
        """A trusted authority of another namespace cannot issue credentials for our slices."""
        w = world()
        xml = slice_credential(w.outsider, w.alice.gid, w.slice.gid, NOW + YEAR)
        self.assert_refused(w.alice, xml, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED, "namespace authority")

    def test_untrusted_owner_certificate(self) -> None:
        """An owner certificate from an untrusted authority is refused."""
        w = world()
        stranger = make_identity(w.impostor, "urn:publicid:IDN+geni:example+user+eve", now=NOW - DAY)
        xml = slice_credential(w.sa, stranger.gid, w.slice.gid, NOW + YEAR)
        error = refuse(self, verifier(), stranger.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("owner certificate", error.output)

    def test_wrapped_signed_element(self) -> None:
        """A forged credential with the signed one moved inside it (same xml:id) is refused."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("info", False)], NOW + YEAR)
        start = xml.index("<credential ")
        end = xml.index("</credential>") + len("</credential>")
        original = xml[start:end]
        forged = original.replace("<name>info</name>", "<name>control</name>")
        wrapped = xml[:start] + forged.replace("</credential>", "<extensions>" + original + "</extensions></credential>") + xml[end:]
        self.assert_refused(w.alice, wrapped, GeniCode.CREDENTIAL_INVALID, "duplicate xml:id")


def mutations(text: str) -> st.SearchStrategy[str]:
    """Single-character edits (replace, delete, insert) of non-whitespace inside the signed credential element."""
    start = text.index("<credential ")
    end = text.index("<signatures>")
    positions = [i for i in range(start, end) if not text[i].isspace()]
    replacement = st.sampled_from([chr(c) for c in range(33, 127)])

    def replace(position: int, char: str) -> str:
        return text[:position] + char + text[position + 1 :]

    return st.one_of(
        st.builds(replace, st.sampled_from(positions), replacement).filter(lambda t: t != text),
        st.builds(lambda p: text[:p] + text[p + 1 :], st.sampled_from(positions)),
        st.builds(lambda p, c: text[:p] + c + text[p:], st.sampled_from(positions[1:]), replacement),
    )


@lru_cache(maxsize=None)
def bob_delegation() -> str:
    """alice's slice credential delegated to bob (two levels)."""
    w = world()
    return delegate_credential(alice_slice(), w.alice, w.bob.gid)


class MutationPropertyTests(SynchronousTestCase):
    """Random edits of a signed credential never verify."""

    def test_unmutated_verifies(self) -> None:
        """The credential the mutations start from is valid for bob."""
        report = verifier().verify_credential(bob_delegation(), NOW, caller=world().bob.gid)
        self.assertTrue(report.ok, report.format())

    @given(st.data())
    def test_mutations_never_verify(self, data: st.DataObject) -> None:
        """Any single-character edit of the signed content is refused."""
        mutated = data.draw(mutations(bob_delegation()))
        report = verifier(cache_size=0).verify_credential(mutated, NOW, caller=world().bob.gid)
        self.assertFalse(report.ok)


    @given(st.integers(min_value=0), st.text(max_size=3), st.integers(min_value=0, max_value=40))
    def test_any_edit_fails_cleanly(self, position: int, insert: str, delete: int) -> None:
        """Edits anywhere in the document end in a grant or a GeniError, never another exception."""
        text = bob_delegation()
        where = position % len(text)
        mutated = text[:where] + insert + text[where + delete :]
        results: list[object] = []
        verifier(cache_size=0).authorize(world().bob.gid, [mutated], "Allocate", SLICE_URN).addBoth(results.append)
        outcome = results[0]
        if isinstance(outcome, Failure):
            self.assertIsInstance(outcome.value, GeniError)


class FakeThreadPool:
    """A thread pool that runs work only when told to."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[..., Any], Callable[..., Any], tuple[Any, ...]]] = []

    def callInThreadWithCallback(self, on_result: Callable[..., Any], function: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        """Queue C{function}."""
        self.pending.append((on_result, function, args))

    def run(self) -> None:
        """Run everything queued, reporting like a real pool."""
        while self.pending:
            on_result, function, args = self.pending.pop(0)
            try:
                result = function(*args)
            except BaseException:
                on_result(False, Failure())
            else:
                on_result(True, result)


class ThreadReactor(Clock):
    """A clock that also accepts callFromThread (run at once)."""

    def callFromThread(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:  # noqa: N802
        """Run C{function} now."""
        function(*args, **kwargs)


class CacheTests(SynchronousTestCase):
    """Verified credentials are remembered per caller until their earliest expiry."""

    def test_second_call_hits_cache(self) -> None:
        """The second identical call is answered from the cache, without parsing."""
        w = world()
        v = verifier()
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual((v.cache_hits, v.cache_size), (0, 1))
        parsed: list[object] = []

        def record(*args: object) -> list[object]:
            parsed.append(args)
            return []

        self.patch(v, "_thd_verify_many", record)
        grant = authorize(self, v, w.alice.gid, [alice_slice()], "Describe", SLICE_URN)
        self.assertEqual(parsed, [])
        self.assertEqual(v.cache_hits, 1)
        self.assertEqual(grant.expires, NOW + YEAR)

    def test_cached_call_checks_target_and_privilege(self) -> None:
        """A cached credential still gets the call-level checks."""
        w = world()
        v = verifier()
        authorize(self, v, w.alice.gid, [alice_user()], "ListResources")
        error = refuse(self, v, w.alice.gid, [alice_user()], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertEqual(v.cache_hits, 1)

    def test_entry_expires_with_clock(self) -> None:
        """Once the clock passes the credential's expiry the cache no longer answers."""
        w = world()
        clock = clock_at()
        v = verifier(clock)
        xml = slice_credential(w.sa, w.alice.gid, w.slice.gid, NOW + DAY)
        authorize(self, v, w.alice.gid, [xml], "Allocate", SLICE_URN)
        clock.advance(DAY - 10)
        authorize(self, v, w.alice.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(v.cache_hits, 1)
        clock.advance(10)
        error = refuse(self, v, w.alice.gid, [xml], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_EXPIRED)
        self.assertEqual(v.cache_hits, 1)

    def test_entry_is_per_caller(self) -> None:
        """A credential cached for alice is verified afresh (and refused) for bob."""
        w = world()
        v = verifier()
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        error = refuse(self, v, w.bob.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual(error.code, GeniCode.CREDENTIAL_MISMATCH)
        self.assertEqual(v.cache_hits, 0)

    def test_altered_copy_not_served_from_cache(self) -> None:
        """A cached credential's altered copy has another digest and is verified cold."""
        w = world()
        v = verifier()
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        altered = alice_slice().replace("<name>info</name>", "<name>sa</name>")
        self.assertEqual(refuse(self, v, w.alice.gid, [altered], "Allocate", SLICE_URN).code, GeniCode.CREDENTIAL_INVALID)

    def test_bounded(self) -> None:
        """The cache holds at most cache_size entries; 0 disables it."""
        w = world()
        v = verifier(cache_size=1)
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        authorize(self, v, w.alice.gid, [alice_user()], "ListResources")
        self.assertEqual(v.cache_size, 1)
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual(v.cache_hits, 0)
        none = verifier(cache_size=0)
        authorize(self, none, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        authorize(self, none, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual((none.cache_hits, none.cache_size), (0, 0))

    def test_failures_not_cached(self) -> None:
        """A refused credential is not remembered."""
        w = world()
        v = verifier()
        refuse(self, v, w.bob.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual(v.cache_size, 0)

    def test_clear(self) -> None:
        """clear_cache forgets everything."""
        w = world()
        v = verifier()
        authorize(self, v, w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        v.clear_cache()
        self.assertEqual(v.cache_size, 0)


class ThreadPoolTests(SynchronousTestCase):
    """Cold verification runs in the pool given; cached calls do not touch it."""

    def test_cold_in_pool_cached_inline(self) -> None:
        """The first call waits for the pool; the repeat is answered at once."""
        w = world()
        pool = FakeThreadPool()
        reactor = ThreadReactor()
        reactor.advance(NOW)
        v = CredentialVerifier(w.roots, reactor, threadpool=pool, reactor=reactor)  # type: ignore[arg-type]
        d = v.authorize(w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertNoResult(d)
        self.assertEqual(len(pool.pending), 1)
        pool.run()
        self.assertEqual(self.successResultOf(d).caller_urn, w.alice.gid.urn)
        again = v.authorize(w.alice.gid, [alice_slice()], "Allocate", SLICE_URN)
        self.assertEqual(pool.pending, [])
        self.successResultOf(again)

    def test_reactor_from_clock(self) -> None:
        """Without a reactor the clock must provide threads."""
        self.assertRaises(ValueError, CredentialVerifier, world().roots, Clock(), FakeThreadPool())


class ReportTests(SynchronousTestCase):
    """verify_credential explains each check."""

    def test_all_checks_for_valid(self) -> None:
        """A valid three-level chain reports PASS for every check, target and privilege included."""
        w = world()
        report = verifier().verify_credential(three_levels(), NOW, caller=w.carol.gid, target_urn=SLICE_URN, privilege="Allocate")
        self.assertTrue(report.ok, report.format())
        names = [c.name for c in report.checks]
        self.assertEqual(names[0], "parse")
        self.assertEqual(names.count("owner = caller"), 1)
        self.assertEqual(len([n for n in names if n.startswith("delegation")]), 2)
        self.assertIn("target", names)
        self.assertIn("privilege", names)
        self.assertIsNone(report.error())
        self.assertTrue(all(line.startswith("PASS ") for line in report.format().splitlines()))

    def test_failure_reasons(self) -> None:
        """An invalid credential reports FAIL lines with reasons, and the first one as error."""
        w = world()
        report = verifier().verify_credential(alice_slice(), NOW + 2 * YEAR, caller=w.bob.gid, target_urn=OTHER_SLICE_URN, privilege="shutdown")
        self.assertFalse(report.ok)
        failed = {c.name for c in report.failures}
        self.assertIn("expiry ref0", failed)
        self.assertIn("owner = caller", failed)
        self.assertIn("target", failed)
        error = report.error()
        assert error is not None
        self.assertIn(error.code, (GeniCode.CREDENTIAL_EXPIRED, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED))

    def test_privilege_names(self) -> None:
        """--privilege takes a privilege, an SFA operation or a method."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, CONTROL, NOW + YEAR)
        v = verifier()
        for name, ok in (("control", True), ("createsliver", True), ("Renew", True), ("embed", False), ("Shutdown", False)):
            self.assertEqual(v.verify_credential(xml, NOW, privilege=name).ok, ok, name)

    def test_unparseable(self) -> None:
        """A document that does not parse fails the parse check."""
        report = verifier().verify_credential("<junk", NOW)
        self.assertEqual([(c.name, c.passed) for c in report.checks], [("parse", False)])
        self.assertIsNone(report.credential)


class PrivilegeTableTests(SynchronousTestCase):
    """The method and privilege rules."""

    def test_methods(self) -> None:
        """AM API methods map onto gcf's SFA operations."""
        self.assertEqual(DEFAULT_TABLE.rule("Allocate"), MethodRule(SLICE, "createsliver"))
        self.assertEqual(DEFAULT_TABLE.rule("status"), MethodRule(SLICE, "getsliceresources"))
        self.assertEqual(DEFAULT_TABLE.rule("ListResources"), MethodRule(USER))
        self.assertIsNone(DEFAULT_TABLE.rule("CreateSliver"))

    def test_privileges(self) -> None:
        """sa/embed/control allow the sliver operations; embed also shutdown; '*' and authority all."""
        for privilege in ("sa", "embed", "control", "*", "authority"):
            for operation in ("createsliver", "getsliceresources", "renewsliver", "deleteslice"):
                self.assertTrue(DEFAULT_TABLE.grants([privilege], operation), (privilege, operation))
        self.assertTrue(DEFAULT_TABLE.grants(["embed"], "shutdown"))
        self.assertFalse(DEFAULT_TABLE.grants(["control"], "shutdown"))
        self.assertFalse(DEFAULT_TABLE.grants(["info", "refresh", "bind", "resolve"], "createsliver"))
        self.assertFalse(DEFAULT_TABLE.grants(["unknown"], "createsliver"))

    def test_with_methods(self) -> None:
        """A table can be extended for further methods without changing the default."""
        table = DEFAULT_TABLE.with_methods({"LoanResources": MethodRule(SLICE, "loanresources")})
        self.assertEqual(table.rule("loanresources"), MethodRule(SLICE, "loanresources"))
        self.assertEqual(table.rule("Allocate"), DEFAULT_TABLE.rule("Allocate"))
        self.assertIsNone(DEFAULT_TABLE.rule("LoanResources"))
        self.assertTrue(table.grants(["bind"], "loanresources"))
        self.assertEqual(DEFAULT_TABLE.rule("GetTicket"), MethodRule(SLICE, "getticket"))
        self.assertRaises(ValueError, MethodRule, "group")
        self.assertIsInstance(PrivilegeTable(), PrivilegeTable)

    def test_abac_kind_constant(self) -> None:
        """ABAC credentials are a known kind (used only for speaks-for)."""
        self.assertEqual(GENI_ABAC, "geni_abac")


class AuthorizerSeamTests(SynchronousTestCase):
    """The verifier is the L{IAuthorizer} the managers' edge asks; its grants say who stands behind a call."""

    def test_provides_authorizer(self) -> None:
        """The verifier provides the authorisation seam."""
        from zope.interface.verify import verifyObject

        from geniam.interfaces import IAuthorizer

        self.assertTrue(verifyObject(IAuthorizer, verifier()))

    def test_user_is_the_caller(self) -> None:
        """A user calling with their own credential is the user behind the call, and delegated nothing."""
        w = world()
        grant = authorize(self, verifier(), w.alice.gid, [as_struct(alice_slice())], "Allocate", SLICE_URN)
        self.assertIs(grant.user, w.alice.gid)
        self.assertFalse(grant.delegated_by(w.alice.gid))

    def test_user_behind_a_delegation(self) -> None:
        """A tool holding a credential alice delegated acts for alice; the delegation is hers, not bob's."""
        w = world()
        delegated = delegate_credential(alice_slice(), w.alice, w.tool.gid, CONTROL, NOW + DAY)
        grant = authorize(self, verifier(), w.tool.gid, [as_struct(delegated)], "Allocate", SLICE_URN)
        self.assertEqual(grant.caller_urn, w.tool.gid.urn)
        self.assertIsNotNone(grant.user)
        self.assertEqual(grant.user.urn, w.alice.gid.urn)  # type: ignore[union-attr]
        self.assertTrue(grant.delegated_by(w.alice.gid))
        self.assertFalse(grant.delegated_by(w.bob.gid))

    def test_no_user_behind_a_tool(self) -> None:
        """A credential issued to a tool itself has no user behind it."""
        w = world()
        own = issue_credential(w.sa, w.tool.gid, w.slice.gid, CONTROL, NOW + DAY)
        grant = authorize(self, verifier(), w.tool.gid, [as_struct(own)], "Allocate", SLICE_URN)
        self.assertIsNone(grant.user)
