"""
Tests for L{geniam.trust.credential}: the hardened parser, the credential
model, and how a call's credential list is read.
"""

from __future__ import annotations


from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.timeutil import parse_time
from geniam.trust.credential import (
    GENI_ABAC,
    GENI_SFA,
    MAX_CREDENTIAL_BYTES,
    parse_credential,
    parse_document,
    unwrap_credentials,
)
from geniam.trust.mint import delegate_credential, issue_credential
from geniam.trust.speaksfor import issue_speaks_for
from tests.trust.test_credential_fixtures import NOW, YEAR, fixture_text, world

ALICE = "urn:publicid:IDN+geni:gpo:gcf+user+alice"


def invalid(case: SynchronousTestCase, data: str | bytes, reason: str, **kwargs: object) -> GeniError:
    """Parsing C{data} fails with CREDENTIAL_INVALID mentioning C{reason}."""
    error = case.assertRaises(GeniError, parse_credential, data, **kwargs)
    case.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)
    case.assertIn(reason, error.output)
    return error


def minimal(body: str, signatures: str = "") -> str:
    """A credential document with the given credential body."""
    return (
        '<signed-credential><credential xml:id="ref0">'
        + body
        + "</credential>"
        + signatures
        + "</signed-credential>"
    )


class ModelTests(SynchronousTestCase):
    """The reference fixtures parse into the expected model."""

    def test_user_credential(self) -> None:
        """alice's user credential: owner = target = alice, three non-delegatable privileges."""
        signed = parse_credential(fixture_text("alice-usercred.xml"))
        credential = signed.credential
        self.assertEqual(signed.kind, GENI_SFA)
        self.assertEqual(signed.version, "3")
        self.assertEqual(credential.xml_id, "ref0")
        self.assertEqual(credential.type, "privilege")
        self.assertEqual(credential.serial, "8")
        self.assertEqual(credential.owner_urn, ALICE)
        self.assertEqual(credential.target_urn, ALICE)
        assert credential.owner_gid is not None
        self.assertEqual(credential.owner_gid.urn, ALICE)
        self.assertEqual(len(credential.owner_gid.chain), 1)
        self.assertEqual(credential.expires, parse_time("2028-11-21T05:57:14Z"))
        self.assertEqual([(p.name, p.can_delegate) for p in credential.privileges], [
            ("refresh", False), ("resolve", False), ("info", False)
        ])
        self.assertIsNone(credential.parent)
        self.assertEqual(credential.signature.signature_id, "Sig_ref0")

    def test_delegated_chain(self) -> None:
        """The delegated credential has its parent below it; levels go outermost first."""
        signed = parse_credential(fixture_text("bob-delegated-fixture-slicecred.xml"))
        levels = signed.levels()
        self.assertEqual([level.xml_id for level in levels], ["ref1", "ref0"])
        self.assertEqual(levels[0].owner_urn, "urn:publicid:IDN+geni:gpo:gcf+user+bob")
        self.assertEqual(levels[1].owner_urn, ALICE)
        self.assertIs(signed.credential.root, levels[1])
        self.assertTrue(all(p.can_delegate for p in levels[1].privileges))
        self.assertFalse(any(p.can_delegate for p in levels[0].privileges))
        self.assertEqual(signed.credential.privilege_names, frozenset({"refresh", "embed", "bind", "control", "info"}))

    def test_digest_is_of_the_document(self) -> None:
        """The digest is SHA-256 of the bytes as presented."""
        import hashlib

        text = fixture_text("alice-usercred.xml")
        self.assertEqual(parse_credential(text).digest, hashlib.sha256(text.encode()).digest())

    def test_version_2_without_urns(self) -> None:
        """A version 2 credential without owner_urn/target_urn takes the URNs from the certificates."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", False)], NOW + YEAR, version=2)
        self.assertNotIn("<owner_urn>", xml)
        credential = parse_credential(xml).credential
        self.assertEqual(credential.owner_urn, w.alice.gid.urn)
        self.assertEqual(credential.target_urn, w.slice.gid.urn)

    def test_zone_less_expiry_is_utc(self) -> None:
        """<expires> without a zone is UTC (parsed before the signature is checked)."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", False)], parse_time("2027-01-02T03:04:05Z"))
        changed = xml.replace("2027-01-02T03:04:05Z", "2027-01-02T03:04:05")
        self.assertEqual(parse_credential(changed).credential.expires, parse_time("2027-01-02T03:04:05Z"))

    def test_can_delegate_forms(self) -> None:
        """can_delegate accepts true/false/1/0 in any case."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("a", True), ("b", False)], NOW + YEAR)
        xml = xml.replace("<can_delegate>true</can_delegate>", "<can_delegate>1</can_delegate>")
        xml = xml.replace("<can_delegate>false</can_delegate>", "<can_delegate>FALSE</can_delegate>")
        privileges = parse_credential(xml).credential.privileges
        self.assertEqual([p.can_delegate for p in privileges], [True, False])

    def test_abac(self) -> None:
        """A speaks-for credential parses into its RT0 statement."""
        w = world()
        signed = parse_credential(issue_speaks_for(w.alice, w.tool.gid, NOW + YEAR))
        self.assertEqual(signed.kind, GENI_ABAC)
        self.assertEqual(signed.version, "1")
        statement = signed.credential.abac
        assert statement is not None
        self.assertEqual(statement.version, "1.1")
        self.assertEqual(len(statement.tails), 1)
        self.assertEqual(statement.head.mnemonic, w.alice.gid.urn)
        self.assertTrue(statement.head.role and statement.head.role.startswith("speaks_for_"))
        self.assertIsNone(signed.credential.owner_gid)

    def test_kind_must_match(self) -> None:
        """A credential presented as geni_sfa that is an ABAC one is malformed, and the reverse."""
        w = world()
        abac = issue_speaks_for(w.alice, w.tool.gid, NOW + YEAR)
        invalid(self, abac, "presented as geni_sfa", kind=GENI_SFA)
        invalid(self, fixture_text("alice-usercred.xml"), "presented as geni_abac", kind=GENI_ABAC)

    def test_unsupported_type(self) -> None:
        """A credential of another type (ticket) is refused as unsupported."""
        text = fixture_text("alice-usercred.xml").replace("<type>privilege</type>", "<type>ticket</type>")
        invalid(self, text, "unsupported credential type")


class HardenedParserTests(SynchronousTestCase):
    """Hostile documents are refused quickly, with a reason."""

    def test_billion_laughs(self) -> None:
        """Entity expansion bombs are refused before parsing."""
        bomb = (
            '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
            + "".join(f'<!ENTITY lol{i} "{"&lol%s;" % (i - 1 if i > 1 else "") * 10}">' for i in range(1, 10))
            + "]><signed-credential>&lol9;</signed-credential>"
        )
        invalid(self, bomb, "DOCTYPE")

    def test_external_entity(self) -> None:
        """External entities (file or network) are refused."""
        for system in ("file:///etc/passwd", "http://example.invalid/x"):
            xxe = f'<!DOCTYPE r [<!ENTITY x SYSTEM "{system}">]><signed-credential>&x;</signed-credential>'
            invalid(self, xxe, "DOCTYPE")

    def test_doctype_alone(self) -> None:
        """Any DOCTYPE is refused, even without entities."""
        invalid(self, "<!DOCTYPE signed-credential><signed-credential/>", "DOCTYPE")

    def test_doctype_in_other_encoding(self) -> None:
        """A DOCTYPE hidden by UTF-16 is refused (NUL bytes)."""
        data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r><signed-credential/>'.encode("utf-16")
        invalid(self, data, "UTF-8")

    def test_huge_document(self) -> None:
        """A document over the size limit is refused without parsing."""
        padding = "x" * MAX_CREDENTIAL_BYTES
        invalid(self, minimal(f"<type>{padding}</type>"), "too large")

    def test_custom_size_limit(self) -> None:
        """The limit can be lowered."""
        invalid(self, fixture_text("alice-usercred.xml"), "too large", max_bytes=1000)

    def test_deep_nesting(self) -> None:
        """Pathologically deep documents are refused by the parser's depth limit."""
        deep = "<a>" * 5000 + "</a>" * 5000
        invalid(self, minimal(deep), "well-formed")

    def test_malformed(self) -> None:
        """Truncated, empty and non-XML documents are refused."""
        text = fixture_text("alice-usercred.xml")
        invalid(self, text[: len(text) // 2], "well-formed")
        invalid(self, "", "empty")
        invalid(self, "   ", "empty")
        invalid(self, "not xml at all", "well-formed")
        error = self.assertRaises(GeniError, parse_document, 42)  # type: ignore[arg-type]
        self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)

    def test_wrong_root(self) -> None:
        """Only signed-credential documents are credentials."""
        invalid(self, "<credential/>", "expected a <signed-credential>")

    def test_two_credentials(self) -> None:
        """Exactly one credential element sits in the root."""
        text = minimal("<type>privilege</type>").replace(
            "</signed-credential>", '<credential xml:id="ref1"/></signed-credential>'
        )
        invalid(self, text, "exactly one <credential>")

    def test_unexpected_root_child(self) -> None:
        """Unknown elements in the root are refused."""
        text = fixture_text("alice-usercred.xml").replace("<signatures>", "<extra/><signatures>")
        invalid(self, text, "unexpected <extra>")

    def test_duplicate_field(self) -> None:
        """A repeated field (two expiry times) is ambiguous and refused."""
        text = fixture_text("alice-usercred.xml").replace(
            "<expires>", "<expires>2099-01-01T00:00:00Z</expires><expires>", 1
        )
        invalid(self, text, "more than one <expires>")

    def test_missing_fields(self) -> None:
        """Type, expiry, owner and target are required."""
        text = fixture_text("alice-usercred.xml")
        start, end = text.index("<owner_gid>"), text.index("</owner_gid>") + len("</owner_gid>")
        invalid(self, text[:start] + text[end:], "no owner_gid")
        invalid(self, text.replace("<type>privilege</type>", ""), "no <type>")
        invalid(self, text.replace("<expires>2028-11-21T05:57:14Z</expires>", ""), "no <expires>")

    def test_bad_expiry(self) -> None:
        """An expiry that is not a date-time is refused."""
        text = fixture_text("alice-usercred.xml").replace("2028-11-21T05:57:14Z", "next year")
        invalid(self, text, "not a date-time")

    def test_urn_must_match_certificate(self) -> None:
        """owner_urn naming someone other than the owner certificate is refused."""
        text = fixture_text("alice-usercred.xml").replace(
            "<owner_urn>urn:publicid:IDN+geni:gpo:gcf+user+alice", "<owner_urn>urn:publicid:IDN+geni:gpo:gcf+user+bob"
        )
        invalid(self, text, "does not match the owner certificate")

    def test_malformed_certificate(self) -> None:
        """A broken PEM in owner_gid is refused."""
        text = fixture_text("alice-usercred.xml").replace("MIIDeDCCAmCgAwIBAgIBAzANBgkqhkiG9w0BAQsFADAmMSQwIgYDVQQDDBtnZW5p", "AAAA", 1)
        invalid(self, text, "owner_gid")

    def test_privileges(self) -> None:
        """Privileges need names, unique names and valid can_delegate values."""
        text = fixture_text("alice-usercred.xml")
        invalid(self, text.replace("<name>resolve</name>", "<name>refresh</name>"), "listed twice")
        invalid(self, text.replace("<name>resolve</name>", "<name></name>"), "without a name")
        invalid(self, text.replace("<can_delegate>false</can_delegate>", "<can_delegate>maybe</can_delegate>", 1), "can_delegate")
        invalid(self, text.replace("<privilege><name>info", "<right><name>info").replace("</privilege></privileges>", "</right></privileges>"), "unexpected <right>")

    def test_missing_xml_id(self) -> None:
        """A credential without xml:id cannot be signed and is refused."""
        text = fixture_text("alice-usercred.xml").replace('<credential xml:id="ref0">', "<credential>")
        invalid(self, text, "no xml:id")

    def test_signature_for_no_level(self) -> None:
        """A signature that signs no level of the chain is refused."""
        text = fixture_text("alice-usercred.xml")
        start = text.index("<Signature ")
        end = text.index("</Signature>") + len("</Signature>")
        extra = text[start:end].replace('xml:id="Sig_ref0"', 'xml:id="Sig_ref7"')
        invalid(self, text[:end] + extra + text[end:], "signs no level")

    def test_missing_signature(self) -> None:
        """A credential without its signature is refused."""
        text = fixture_text("alice-usercred.xml")
        start = text.index("<signatures>")
        end = text.index("</signatures>") + len("</signatures>")
        invalid(self, text[:start] + text[end:], "no signature Sig_ref0")

    def test_chain_too_deep(self) -> None:
        """Delegation chains are bounded."""
        w = world()
        xml = issue_credential(w.sa, w.alice.gid, w.slice.gid, [("control", True)], NOW + YEAR)
        owners = [w.alice, w.bob]
        for depth in range(8):
            giver, taker = owners[depth % 2], owners[(depth + 1) % 2]
            xml = delegate_credential(xml, giver, taker.gid, [("control", True)])
        invalid(self, xml, "longer than")


class UnwrapTests(SynchronousTestCase):
    """How a call's credentials argument is read."""

    def test_structs_and_strings(self) -> None:
        """Structs (geni_type case-insensitive) and bare strings are kept, in order."""
        usable, skipped = unwrap_credentials(
            [
                {"geni_type": "GENI_SFA", "geni_version": "3", "geni_value": "<a/>"},
                {"geni_type": "geni_sfa", "geni_version": 2, "geni_value": "<b/>"},
                "<c/>",
                {"geni_type": "geni_abac", "geni_version": "1", "geni_value": b"<d/>"},
            ]
        )
        self.assertEqual(skipped, [])
        self.assertEqual([(u.kind, u.version, u.value, u.index) for u in usable], [
            (GENI_SFA, "3", b"<a/>", 0),
            (GENI_SFA, "2", b"<b/>", 1),
            (None, None, b"<c/>", 2),
            (GENI_ABAC, "1", b"<d/>", 3),
        ])

    def test_unknown_types_skipped(self) -> None:
        """Unknown types and versions are skipped with a note, never used."""
        usable, skipped = unwrap_credentials(
            [
                {"geni_type": "badtype", "geni_version": "3", "geni_value": "<a/>"},
                {"geni_type": "geni_sfa", "geni_version": "4", "geni_value": "<a/>"},
            ]
        )
        self.assertEqual(usable, [])
        self.assertEqual(len(skipped), 2)
        self.assertIn("unknown geni_type 'badtype'", skipped[0])
        self.assertIn("unsupported geni_sfa version '4'", skipped[1])

    def test_malformed_structs(self) -> None:
        """Structs missing their type, version or value are malformed."""
        for item in (
            {"geni_version": "3", "geni_value": "<a/>"},
            {"geni_type": "geni_sfa", "geni_value": "<a/>"},
            {"geni_type": "geni_sfa", "geni_version": "3"},
            {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": 5},
            7,
        ):
            error = self.assertRaises(GeniError, unwrap_credentials, [item])
            self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)

    def test_not_a_list(self) -> None:
        """The argument must be a list of bounded length."""
        self.assertEqual(self.assertRaises(GeniError, unwrap_credentials, "<a/>").code, GeniCode.BADARGS)
        error = self.assertRaises(GeniError, unwrap_credentials, ["<a/>"] * 5, 4)
        self.assertEqual(error.code, GeniCode.BADARGS)
