"""
Tests for L{geniam.rspec.parser}: hostile and malformed documents become
the right L{GeniError} before any harm is done.
"""

from __future__ import annotations


from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec.parser import DEFAULT_LIMITS, ParseLimits, parse_rspec, parse_xml, serialise, to_bytes
from tests.rspec.test_fixtures import request_document

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">&lol9;</rspec>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE rspec [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request"><node client_id="&xxe;"/></rspec>"""


class HostileInputTests(SynchronousTestCase):
    """Attacks on the XML parser fail fast with BADARGS or TOOBIG."""

    def assertRefused(self, data: str | bytes, code: GeniCode, limits: ParseLimits = DEFAULT_LIMITS) -> GeniError:
        """Assert that parsing C{data} raises C{code}."""
        error = self.assertRaises(GeniError, parse_xml, data, limits)
        self.assertEqual(error.code, code, error.output)
        return error

    def test_billion_laughs(self) -> None:
        """Nested entity declarations are refused, never expanded."""
        error = self.assertRefused(BILLION_LAUGHS, GeniCode.BADARGS)
        self.assertIn("DOCTYPE", error.output)

    def test_external_entity(self) -> None:
        """An external entity naming a local file is refused; the file's content never appears."""
        error = self.assertRefused(EXTERNAL_ENTITY, GeniCode.BADARGS)
        self.assertNotIn("root:", error.output)

    def test_doctype_alone(self) -> None:
        """Even a harmless DOCTYPE is refused."""
        self.assertRefused(b'<!DOCTYPE rspec><rspec type="request"/>', GeniCode.BADARGS)

    def test_doctype_in_utf16(self) -> None:
        """A DOCTYPE hidden from the byte scan by UTF-16 is caught in the parsed tree."""
        data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>'.encode("utf-16")
        self.assertRefused(data, GeniCode.BADARGS)

    def test_undeclared_entity(self) -> None:
        """A reference to an undeclared entity is a syntax error."""
        self.assertRefused(b"<a>&passwd;</a>", GeniCode.BADARGS)

    def test_huge_document(self) -> None:
        """A document over the size limit is refused before parsing, as TOOBIG."""
        data = b"<a>" + b"x" * (DEFAULT_LIMITS.max_bytes + 1) + b"</a>"
        error = self.assertRefused(data, GeniCode.TOOBIG)
        self.assertIn(str(DEFAULT_LIMITS.max_bytes), error.output)

    def test_huge_text_document(self) -> None:
        """A C{str} over the size limit is refused too."""
        self.assertRefused("<a>" + "x" * (DEFAULT_LIMITS.max_bytes + 1) + "</a>", GeniCode.TOOBIG)

    def test_configurable_size(self) -> None:
        """The size limit is the caller's."""
        self.assertRefused(b"<a>" + b"x" * 100 + b"</a>", GeniCode.TOOBIG, ParseLimits(max_bytes=64))
        parse_xml(b"<a>" + b"x" * 100 + b"</a>", ParseLimits(max_bytes=200))

    def test_deep_nesting(self) -> None:
        """Nesting deeper than the limit is refused."""
        depth = DEFAULT_LIMITS.max_depth + 1
        error = self.assertRefused(b"<a>" * depth + b"</a>" * depth, GeniCode.BADARGS)
        self.assertIn("deeper", error.output)

    def test_very_deep_nesting(self) -> None:
        """Nesting beyond libxml2's own bound gives the same clear error."""
        error = self.assertRefused(b"<a>" * 100_000 + b"</a>" * 100_000, GeniCode.BADARGS)
        self.assertIn("deeper", error.output)

    def test_nesting_at_limit(self) -> None:
        """Nesting exactly at the limit is accepted."""
        depth = 10
        root = parse_xml(b"<a>" * depth + b"</a>" * depth, ParseLimits(max_depth=depth))
        self.assertEqual(root.tag, "a")

    def test_too_many_elements(self) -> None:
        """More elements than the limit is TOOBIG."""
        self.assertRefused(b"<a>" + b"<b/>" * 20 + b"</a>", GeniCode.TOOBIG, ParseLimits(max_elements=20))
        parse_xml(b"<a>" + b"<b/>" * 19 + b"</a>", ParseLimits(max_elements=20))

    def test_not_xml(self) -> None:
        """Text that is not XML is BADARGS."""
        self.assertRefused("definitely not xml", GeniCode.BADARGS)

    def test_truncated(self) -> None:
        """A truncated document is BADARGS."""
        self.assertRefused("<rspec><node>", GeniCode.BADARGS)

    def test_empty(self) -> None:
        """An empty document is BADARGS."""
        self.assertRefused("   ", GeniCode.BADARGS)

    def test_wrong_type(self) -> None:
        """Neither str nor bytes is BADARGS."""
        self.assertRefused(42, GeniCode.BADARGS)  # type: ignore[arg-type]

    def test_comments_and_processing_instructions_dropped(self) -> None:
        """Comments and processing instructions do not survive parsing."""
        root = parse_xml("<a><!-- secret --><?php evil ?><b/></a>")
        self.assertEqual([child.tag for child in root], ["b"])

    def test_xml_declaration_in_str(self) -> None:
        """A C{str} with an encoding declaration parses (lxml alone refuses it)."""
        root = parse_xml('<?xml version="1.0" encoding="UTF-8"?><a>é</a>')
        self.assertEqual(root.text, "é")

    @given(st.binary(max_size=300))
    def test_arbitrary_bytes(self, data: bytes) -> None:
        """Whatever the bytes, the parser returns a tree or raises GeniError, nothing else."""
        try:
            parse_xml(data)
        except GeniError as e:
            self.assertIn(e.code, (GeniCode.BADARGS, GeniCode.TOOBIG))


class ParseRspecTests(SynchronousTestCase):
    """L{parse_rspec} checks the root element, namespace and type."""

    def test_accepts_request(self) -> None:
        """A GENI v3 request parses to its root."""
        root = parse_rspec(request_document("<node client_id='a'/>"), "request")
        self.assertEqual(root.get("type"), "request")

    def test_wrong_namespace(self) -> None:
        """An RSpec in the ProtoGENI v2 namespace is BADARGS."""
        text = '<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request"/>'
        error = self.assertRaises(GeniError, parse_rspec, text, "request")
        self.assertEqual(error.code, GeniCode.BADARGS)
        self.assertIn("namespace", error.output)

    def test_wrong_root(self) -> None:
        """A root other than <rspec> is BADARGS."""
        error = self.assertRaises(GeniError, parse_rspec, '<request xmlns="http://www.geni.net/resources/rspec/3"/>')
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_wrong_type(self) -> None:
        """A manifest where a request is expected is BADARGS."""
        error = self.assertRaises(GeniError, parse_rspec, request_document("", "manifest"), "request")
        self.assertEqual(error.code, GeniCode.BADARGS)
        self.assertIn("manifest", error.output)

    def test_missing_type(self) -> None:
        """An <rspec> without a type is BADARGS."""
        error = self.assertRaises(GeniError, parse_rspec, '<rspec xmlns="http://www.geni.net/resources/rspec/3"/>')
        self.assertEqual(error.code, GeniCode.BADARGS)


class HelperTests(SynchronousTestCase):
    """L{to_bytes}, L{serialise} and L{ParseLimits}."""

    def test_to_bytes_strips_declaration(self) -> None:
        """A C{str}'s XML declaration is dropped and the rest encoded as UTF-8."""
        self.assertEqual(to_bytes('<?xml version="1.0" encoding="latin-1"?><a>é</a>'), "<a>é</a>".encode())

    def test_serialise_indents(self) -> None:
        """Serialised documents are indented and carry no declaration."""
        text = serialise(parse_xml("<a><b/></a>"))
        self.assertEqual(text, "<a>\n  <b/>\n</a>\n")

    def test_limits_validated(self) -> None:
        """Limits must be positive integers."""
        self.assertRaises(ValueError, ParseLimits, max_bytes=0)
        self.assertRaises(ValueError, ParseLimits, max_depth=True)
