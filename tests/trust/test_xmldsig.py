"""
Tests for L{geniam.trust.xmldsig}: canonical XML, and the narrow XML-DSig
layout of GENI credentials, verified and produced.
"""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st
from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.trust import xmldsig
from geniam.trust.certs import make_authority
from geniam.trust.xmldsig import DSIG_NS, XML_ID, SignatureError, canonicalize, check_signature, index_ids, sign
from tests.trust.test_credential_fixtures import NOW, fixture_text, world

PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def parse(text: str | bytes) -> etree._Element:
    """Parse test XML."""
    if isinstance(text, str):
        text = text.encode("utf-8")
    return etree.fromstring(text, PARSER)


def libxml2_c14n(root: etree._Element, with_comments: bool = False) -> bytes:
    """libxml2's canonical form of the whole document (correct for a root element)."""
    return etree.tostring(root.getroottree(), method="c14n", with_comments=with_comments)


def signed_document(algorithm: str = "sha256") -> tuple[etree._Element, etree._Element]:
    """A small credential-shaped document signed by the test authority; return (root, credential)."""
    root = parse(
        '<signed-credential xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        '<credential xml:id="ref0"><type>privilege</type><serial>1</serial></credential></signed-credential>'
    )
    credential = root[0]
    sa = world().sa
    sign(root, credential, sa.private_key, [sa.gid.certificate], algorithm)  # type: ignore[arg-type]
    return parse(etree.tostring(root)), credential


class CanonicalizationTests(SynchronousTestCase):
    """Inclusive C14N 1.0 of a document subset."""

    def test_whole_documents_match_libxml2(self) -> None:
        """For the root element the result is libxml2's canonical form of the document."""
        for name in ("alice-usercred.xml", "fixture-slicecred.xml", "bob-delegated-fixture-slicecred.xml"):
            root = parse(fixture_text(name))
            self.assertEqual(canonicalize(root), libxml2_c14n(root))

    def test_apex_carries_inherited_namespaces_and_xml_attributes(self) -> None:
        """A subtree's apex declares every namespace in scope and inherits xml:* attributes."""
        root = parse(
            '<r xmlns:u="urn:unused" xml:lang="en"><s xmlns="urn:d" xml:id="x1"><i a="1"><j/></i></s></r>'
        )
        inner = root[0][0]
        self.assertEqual(
            canonicalize(inner),
            b'<i xmlns="urn:d" xmlns:u="urn:unused" a="1" xml:id="x1" xml:lang="en"><j></j></i>',
        )

    def test_default_namespace_not_undeclared_below_apex(self) -> None:
        """Descendants in the inherited default namespace get no xmlns="" (lxml's own subtree C14N adds it)."""
        root = parse('<Signature xmlns="urn:d"><SignedInfo><Reference><T/></Reference></SignedInfo></Signature>')
        self.assertEqual(
            canonicalize(root[0]),
            b'<SignedInfo xmlns="urn:d"><Reference><T></T></Reference></SignedInfo>',
        )

    def test_undeclared_default_namespace(self) -> None:
        """An element leaving a default namespace renders xmlns=""."""
        root = parse('<a xmlns="urn:d"><b xmlns=""><c/></b></a>')
        self.assertEqual(canonicalize(root), b'<a xmlns="urn:d"><b xmlns=""><c></c></b></a>')

    def test_escaping_and_attribute_order(self) -> None:
        """Text and attribute values are escaped; attributes sort by namespace URI, then name."""
        root = parse('<a xmlns:z="urn:a" z:b="1" c="&#9;&quot;&lt;&#10;" b="2">&lt;&amp;&gt;&#13;</a>')
        self.assertEqual(
            canonicalize(root),
            b'<a xmlns:z="urn:a" b="2" c="&#x9;&quot;&lt;&#xA;" z:b="1">&lt;&amp;&gt;&#xD;</a>',
        )

    def test_comments(self) -> None:
        """Comments are kept only in the with-comments variant."""
        root = parse("<a><!-- note -->x<?pi data?></a>")
        self.assertEqual(canonicalize(root), b"<a>x<?pi data?></a>")
        self.assertEqual(canonicalize(root, with_comments=True), b"<a><!-- note -->x<?pi data?></a>")

    def test_exclude(self) -> None:
        """The excluded element (an enveloped signature) disappears with its subtree, its tail stays."""
        root = parse("<a>1<b><c/></b>2</a>")
        self.assertEqual(canonicalize(root, exclude=root[0]), b"<a>12</a>")

    @given(
        st.recursive(
            st.tuples(
                st.sampled_from(["a", "p:b", "c", "q:d"]),
                st.dictionaries(st.sampled_from(["x", "y", "p:z", "q:w"]), st.text(max_size=5), max_size=3),
                st.text(alphabet="ab <>&\"'\t\r\n", max_size=6),
                st.just(()),
            ),
            lambda children: st.tuples(
                st.sampled_from(["a", "p:b", "c", "q:d"]),
                st.dictionaries(st.sampled_from(["x", "y", "p:z"]), st.text(max_size=5), max_size=3),
                st.text(alphabet="ab <>&\t\r\n", max_size=6),
                st.lists(children, max_size=3).map(tuple),
            ),
            max_leaves=8,
        )
    )
    def test_random_documents_match_libxml2(self, tree: tuple) -> None:  # type: ignore[type-arg]
        """For random documents our canonical form of the root equals libxml2's."""
        nsmap = {"p": "urn:p", "q": "urn:q"}

        def build(node: tuple, parent: etree._Element | None) -> etree._Element:  # type: ignore[type-arg]
            tag, attributes, text, children = node

            def clark(name: str) -> str:
                if ":" in name:
                    prefix, local = name.split(":")
                    return f"{{{nsmap[prefix]}}}{local}"
                return name

            element = (
                etree.Element(clark(tag), nsmap=nsmap) if parent is None else etree.SubElement(parent, clark(tag))
            )
            for key, value in attributes.items():
                element.set(clark(key), "".join(ch for ch in value if ch.isprintable() or ch in "\t\n"))
            element.text = text
            for child in children:
                build(child, element)
            return element

        root = parse(etree.tostring(build(tree, None)))
        self.assertEqual(canonicalize(root), libxml2_c14n(root))


class FixtureSignatureTests(SynchronousTestCase):
    """The reference tools' signatures verify byte for byte."""

    def test_every_level_verifies(self) -> None:
        """Each credential level of each fixture has a matching digest and a valid RSA-SHA1 signature."""
        for name, levels in (
            ("alice-usercred.xml", 1),
            ("bob-usercred.xml", 1),
            ("fixture-slicecred.xml", 1),
            ("bob-delegated-fixture-slicecred.xml", 2),
        ):
            root = parse(fixture_text(name))
            ids = index_ids(root)
            credentials = list(root.iter("credential"))
            self.assertEqual(len(credentials), levels)
            for credential in credentials:
                check = check_signature(root, credential, ids)
                self.assertTrue(check.digest_matches, name)
                self.assertEqual(check.signature_method, xmldsig.RSA_SHA1)
                self.assertEqual(check.digest_method, xmldsig.DIGEST_SHA1)
                check.verify()

    def test_signer_certificates(self) -> None:
        """The signer is the first certificate of KeyInfo; alice's delegation carries her chain."""
        root = parse(fixture_text("bob-delegated-fixture-slicecred.xml"))
        check = check_signature(root, root[0])
        self.assertEqual(len(check.certificates), 2)
        self.assertIn("gcf.user.alice", check.signer.subject.rfc4514_string())

    def test_signed_info_carries_signature_id(self) -> None:
        """The canonical SignedInfo inherits the Signature's xml:id, as xmlsec1 signed it."""
        root = parse(fixture_text("alice-usercred.xml"))
        check = check_signature(root, root[0])
        self.assertIn(b'xml:id="Sig_ref0"', check.signed_info.split(b">", 1)[0])


class SignAndVerifyTests(SynchronousTestCase):
    """Signatures we produce have the reference layout and verify."""

    def test_round_trip_sha256(self) -> None:
        """RSA-SHA256 is the default and verifies."""
        root, _ = signed_document()
        check = check_signature(root, root[0])
        self.assertEqual(check.signature_method, xmldsig.RSA_SHA256)
        self.assertEqual(check.digest_method, xmldsig.DIGEST_SHA256)
        check.verify()

    def test_round_trip_sha1(self) -> None:
        """RSA-SHA1 (as the reference tools sign) is available and verifies."""
        root, _ = signed_document("sha1")
        check = check_signature(root, root[0])
        self.assertEqual(check.signature_method, xmldsig.RSA_SHA1)
        check.verify()

    def test_layout(self) -> None:
        """Signature in signatures, xml:id Sig_ref0, reference #ref0, enveloped transform, C14N, certificate."""
        root, _ = signed_document()
        signature = root.find("signatures/{%s}Signature" % DSIG_NS)
        assert signature is not None
        self.assertEqual(signature.get(XML_ID), "Sig_ref0")
        ns = {"ds": DSIG_NS}
        self.assertEqual(signature.xpath("ds:SignedInfo/ds:Reference/@URI", namespaces=ns), ["#ref0"])
        self.assertEqual(
            signature.xpath("ds:SignedInfo/ds:Reference/ds:Transforms/ds:Transform/@Algorithm", namespaces=ns),
            [xmldsig.ENVELOPED_SIGNATURE],
        )
        self.assertEqual(
            signature.xpath("ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=ns), [xmldsig.C14N]
        )
        self.assertEqual(len(signature.xpath("ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=ns)), 1)

    def test_unknown_algorithm(self) -> None:
        """Signing with an unknown algorithm name is refused."""
        root = parse('<signed-credential><credential xml:id="ref0"/></signed-credential>')
        sa = world().sa
        error = self.assertRaises(
            GeniError, sign, root, root[0], sa.private_key, [sa.gid.certificate], "md5"
        )
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_sign_twice_refused(self) -> None:
        """An element already signed cannot get a second signature."""
        root, _ = signed_document()
        sa = world().sa
        self.assertRaises(GeniError, sign, root, root[0], sa.private_key, [sa.gid.certificate])

    def test_non_rsa_key_refused(self) -> None:
        """Only RSA keys sign credentials."""
        from cryptography.hazmat.primitives.asymmetric import ec

        root = parse('<signed-credential><credential xml:id="ref0"/></signed-credential>')
        key = ec.generate_private_key(ec.SECP256R1())
        self.assertRaises(GeniError, sign, root, root[0], key, [world().sa.gid.certificate])  # type: ignore[arg-type]


class RejectionTests(SynchronousTestCase):
    """Everything outside the narrow layout is refused with a reason."""

    def assert_rejected(self, root: etree._Element, reason: str, element: etree._Element | None = None) -> None:
        """check_signature (with the document's id index) refuses, mentioning C{reason}."""
        error = self.assertRaises(
            SignatureError, lambda: check_signature(root, root[0] if element is None else element)
        )
        self.assertEqual(error.code, GeniCode.CREDENTIAL_INVALID)
        self.assertIn(reason, error.output)

    def test_altered_content_fails_digest(self) -> None:
        """A changed signed element keeps its layout but its digest no longer matches."""
        root, _ = signed_document()
        root[0].find("serial").text = "2"  # type: ignore[union-attr]
        check = check_signature(root, root[0])
        self.assertFalse(check.digest_matches)
        error = self.assertRaises(SignatureError, check.verify)
        self.assertIn("digest", error.output)

    def test_altered_signed_info_fails_signature(self) -> None:
        """A changed SignedInfo (new digest) fails the RSA signature."""
        root, _ = signed_document()
        root[0].find("serial").text = "2"  # type: ignore[union-attr]
        value = root.find(".//{%s}DigestValue" % DSIG_NS)
        assert value is not None
        from hashlib import sha256

        value.text = base64.b64encode(sha256(canonicalize(root[0])).digest()).decode()
        check = check_signature(root, root[0])
        self.assertTrue(check.digest_matches)
        error = self.assertRaises(SignatureError, check.verify)
        self.assertIn("does not verify", error.output)

    def test_other_key_fails(self) -> None:
        """Swapping the certificate for another key's makes the signature fail."""
        root, _ = signed_document()
        certificate = root.find(".//{%s}X509Certificate" % DSIG_NS)
        assert certificate is not None
        from cryptography.hazmat.primitives.serialization import Encoding

        other = world().impostor.gid.certificate.public_bytes(Encoding.DER)
        certificate.text = base64.b64encode(other).decode()
        check = check_signature(root, root[0])
        self.assertRaises(SignatureError, check.verify)

    def test_duplicate_xml_id(self) -> None:
        """Two elements with one xml:id are refused outright."""
        root, _ = signed_document()
        copy = etree.SubElement(root, "credential")
        copy.set(XML_ID, "ref0")
        error = self.assertRaises(SignatureError, index_ids, root)
        self.assertIn("duplicate xml:id", error.output)
        self.assert_rejected(root, "duplicate")

    def test_reference_to_another_element(self) -> None:
        """A signature for #ref0 does not vouch for an element with another id."""
        root, _ = signed_document()
        other = etree.SubElement(root, "credential")
        other.set(XML_ID, "ref9")
        signature = root.find(".//{%s}Signature" % DSIG_NS)
        assert signature is not None
        signature.set(XML_ID, "Sig_ref9")
        self.assert_rejected(root, "is not #ref9", other)

    def test_wrapped_element(self) -> None:
        """The signed credential moved under a wrapper and replaced by a forged one fails."""
        root, _ = signed_document()
        original = root[0]
        wrapper = etree.SubElement(root.find("signatures"), "wrapper")  # type: ignore[arg-type]
        wrapper.append(original)
        forged = etree.Element("credential")
        forged.set(XML_ID, "ref0x")
        root.insert(0, forged)
        # The forged element claims the signed id only by reference: it has another id.
        self.assert_rejected(root, "no signature Sig_ref0x", forged)
        forged.set(XML_ID, "ref0")
        self.assert_rejected(root, "duplicate", forged)

    def test_moved_element(self) -> None:
        """A signed element reached under another parent is not the credential being checked."""
        root, _ = signed_document()
        decoy = etree.Element("credential")
        root.insert(0, decoy)
        holder = etree.SubElement(decoy, "parent")
        holder.append(root[1])
        # The verifier checks the decoy: it has no id, so nothing vouches for it.
        self.assert_rejected(root, "no xml:id", decoy)

    def test_signature_outside_signatures(self) -> None:
        """A signature that is not a child of <signatures> is not looked at."""
        root, _ = signed_document()
        signature = root.find(".//{%s}Signature" % DSIG_NS)
        assert signature is not None
        root.append(signature)
        self.assert_rejected(root, "no signature Sig_ref0")

    def test_signature_nested_in_credential(self) -> None:
        """A Signature inside the signed credential is refused."""
        root, _ = signed_document()
        etree.SubElement(root[0], "{%s}Signature" % DSIG_NS)
        self.assert_rejected(root, "nested inside")

    def test_two_references(self) -> None:
        """Exactly one Reference is allowed."""
        root, _ = signed_document()
        reference = root.find(".//{%s}Reference" % DSIG_NS)
        assert reference is not None
        reference.addnext(etree.fromstring(etree.tostring(reference)))
        self.assert_rejected(root, "one Reference")

    def test_unsupported_transform(self) -> None:
        """An XPath transform is refused."""
        root, _ = signed_document()
        transform = root.find(".//{%s}Transform" % DSIG_NS)
        assert transform is not None
        transform.set("Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116")
        self.assert_rejected(root, "unsupported transform")

    def test_unsupported_signature_method(self) -> None:
        """HMAC and other signature methods are refused."""
        root, _ = signed_document()
        method = root.find(".//{%s}SignatureMethod" % DSIG_NS)
        assert method is not None
        method.set("Algorithm", DSIG_NS + "hmac-sha1")
        self.assert_rejected(root, "unsupported signature method")

    def test_unsupported_canonicalization(self) -> None:
        """Exclusive C14N is not the GENI layout."""
        root, _ = signed_document()
        method = root.find(".//{%s}CanonicalizationMethod" % DSIG_NS)
        assert method is not None
        method.set("Algorithm", "http://www.w3.org/2001/10/xml-exc-c14n#")
        self.assert_rejected(root, "unsupported canonicalization")

    def test_object_element(self) -> None:
        """A ds:Object (where wrapped content hides) is refused."""
        root, _ = signed_document()
        signature = root.find(".//{%s}Signature" % DSIG_NS)
        assert signature is not None
        etree.SubElement(signature, "{%s}Object" % DSIG_NS)
        self.assert_rejected(root, "expected SignedInfo, SignatureValue, KeyInfo")

    def test_missing_certificate(self) -> None:
        """A signature without the signer's certificate is refused."""
        root, _ = signed_document()
        data = root.find(".//{%s}X509Data" % DSIG_NS)
        assert data is not None
        for child in list(data):
            data.remove(child)
        self.assert_rejected(root, "no X509Certificate")

    def test_bad_base64(self) -> None:
        """SignatureValue must be base64."""
        root, _ = signed_document()
        value = root.find(".//{%s}SignatureValue" % DSIG_NS)
        assert value is not None
        value.text = "not*base64"
        self.assert_rejected(root, "not valid base64")

    def test_non_rsa_signer(self) -> None:
        """A signer certificate with a non-RSA key is refused."""
        from cryptography.hazmat.primitives.asymmetric import ed25519
        from cryptography.hazmat.primitives.serialization import Encoding

        root, _ = signed_document()
        authority = make_authority("geni:ed", now=NOW, private_key=ed25519.Ed25519PrivateKey.generate())
        certificate = root.find(".//{%s}X509Certificate" % DSIG_NS)
        assert certificate is not None
        certificate.text = base64.b64encode(authority.gid.certificate.public_bytes(Encoding.DER)).decode()
        error = self.assertRaises(SignatureError, check_signature(root, root[0]).verify)
        self.assertIn("not RSA", error.output)
