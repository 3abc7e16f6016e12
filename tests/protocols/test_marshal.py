"""
Tests for L{geniam.protocols.marshal}: hardened decoding and reply sanitising.
"""

from __future__ import annotations

import re
import xmlrpc.client
from datetime import datetime, timezone
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode
from geniam.protocols.marshal import (
    INVALID_REQUEST,
    DecodedCalls,
    PARSE_ERROR,
    XmlRpcDecodeError,
    dump_call,
    dump_fault,
    dump_response,
    encoded_response,
    parse_call,
    parse_response,
    sanitise,
)

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<methodCall><methodName>GetVersion</methodName><params><param><value>&lol3;</value></param></params></methodCall>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<methodCall><methodName>GetVersion</methodName><params><param><value>&secret;</value></param></params></methodCall>
"""


class ParseCallTests(SynchronousTestCase):
    """L{parse_call} decodes calls and refuses what it must not process."""

    def test_round_trip(self) -> None:
        """A call encoded by L{dump_call} decodes to its name and parameters."""
        data = dump_call("Describe", (["urn:a"], [{"geni_type": "geni_sfa"}], {"geni_compressed": True}))
        self.assertEqual(
            parse_call(data),
            ("Describe", (["urn:a"], [{"geni_type": "geni_sfa"}], {"geni_compressed": True})),
        )

    def test_no_params(self) -> None:
        """A call without parameters decodes to an empty tuple."""
        data = b"<?xml version='1.0'?><methodCall><methodName>GetVersion</methodName></methodCall>"
        self.assertEqual(parse_call(data), ("GetVersion", ()))

    def test_doctype_refused(self) -> None:
        """A document with a DOCTYPE is refused as a parse error, entities unexpanded."""
        error = self.assertRaises(XmlRpcDecodeError, parse_call, BILLION_LAUGHS)
        self.assertEqual(error.fault_code, PARSE_ERROR)
        self.assertIn("DOCTYPE", error.reason)

    def test_external_entity_refused(self) -> None:
        """An external entity is never resolved: the document is refused."""
        error = self.assertRaises(XmlRpcDecodeError, parse_call, EXTERNAL_ENTITY)
        self.assertEqual(error.fault_code, PARSE_ERROR)
        self.assertNotIn("root:", error.reason)

    def test_undeclared_entity_refused(self) -> None:
        """A reference to an undeclared entity is a parse error."""
        data = b"<methodCall><methodName>&x;</methodName></methodCall>"
        self.assertEqual(self.assertRaises(XmlRpcDecodeError, parse_call, data).fault_code, PARSE_ERROR)

    def test_not_well_formed(self) -> None:
        """Malformed XML is a parse error."""
        error = self.assertRaises(XmlRpcDecodeError, parse_call, b"<methodCall><methodName>x</methodCall>")
        self.assertEqual(error.fault_code, PARSE_ERROR)

    def test_deep_nesting_refused(self) -> None:
        """Nesting deeper than the bound is refused before it is built."""
        deep = b"<value><array><data>" * 40 + b"</data></array></value>" * 40
        data = b"<methodCall><methodName>x</methodName><params><param>" + deep + b"</param></params></methodCall>"
        error = self.assertRaises(XmlRpcDecodeError, parse_call, data)
        self.assertEqual(error.fault_code, PARSE_ERROR)
        self.assertIn("nested", error.reason)

    def test_response_is_not_a_call(self) -> None:
        """A methodResponse sent as a call is invalid XML-RPC."""
        error = self.assertRaises(XmlRpcDecodeError, parse_call, dump_response(1))
        self.assertEqual(error.fault_code, INVALID_REQUEST)

    def test_missing_method_name(self) -> None:
        """A methodCall without methodName is invalid XML-RPC."""
        data = b"<methodCall><params><param><value>1</value></param></params></methodCall>"
        self.assertEqual(self.assertRaises(XmlRpcDecodeError, parse_call, data).fault_code, INVALID_REQUEST)

    def test_bad_value(self) -> None:
        """An integer element holding text is invalid XML-RPC, not a crash."""
        data = b"<methodCall><methodName>x</methodName><params><param><value><int>abc</int></value></param></params></methodCall>"
        self.assertEqual(self.assertRaises(XmlRpcDecodeError, parse_call, data).fault_code, INVALID_REQUEST)

    def test_unclosed_struct(self) -> None:
        """A truncated document is a parse error."""
        data = dump_call("x", ({"a": 1},))[:-40]
        self.assertEqual(self.assertRaises(XmlRpcDecodeError, parse_call, data).fault_code, PARSE_ERROR)


class ParseResponseTests(SynchronousTestCase):
    """L{parse_response} decodes replies and raises faults."""

    def test_value(self) -> None:
        """The single value of a response is returned."""
        self.assertEqual(parse_response(dump_response({"a": [1, "b"]})), {"a": [1, "b"]})

    def test_fault(self) -> None:
        """A fault is raised as L{xmlrpc.client.Fault}."""
        fault = self.assertRaises(xmlrpc.client.Fault, parse_response, dump_fault(-32601, "no such method"))
        self.assertEqual((fault.faultCode, fault.faultString), (-32601, "no such method"))

    def test_call_is_not_a_response(self) -> None:
        """A methodCall is not a response."""
        error = self.assertRaises(XmlRpcDecodeError, parse_response, dump_call("x", ()))
        self.assertEqual(error.fault_code, INVALID_REQUEST)

    def test_doctype_refused(self) -> None:
        """Responses get the same hardening as calls."""
        data = b'<!DOCTYPE x [<!ENTITY a "b">]><methodResponse><params><param><value>&a;</value></param></params></methodResponse>'
        self.assertEqual(self.assertRaises(XmlRpcDecodeError, parse_response, data).fault_code, PARSE_ERROR)


class SanitiseTests(SynchronousTestCase):
    """L{sanitise} removes what GENI clients cannot read."""

    def test_none_members_dropped(self) -> None:
        """C{None} members of structs disappear; C{None} elsewhere becomes an empty string."""
        self.assertEqual(
            sanitise({"a": None, "b": [None, {"c": None, "d": 1}]}),
            {"b": ["", {"d": 1}]},
        )
        self.assertEqual(sanitise(None), "")

    def test_datetimes_become_strings(self) -> None:
        """Aware, naive and XML-RPC datetimes become RFC 3339 UTC strings."""
        aware = datetime(2026, 11, 22, 13, 0, tzinfo=timezone.utc)
        naive = datetime(2026, 11, 22, 13, 0)
        self.assertEqual(
            sanitise([aware, naive, xmlrpc.client.DateTime("20261122T13:00:00")]),
            ["2026-11-22T13:00:00Z"] * 3,
        )

    def test_big_integers_become_strings(self) -> None:
        """Integers beyond 32 bits become decimal strings; those within stay integers."""
        self.assertEqual(
            sanitise([2**31 - 1, -(2**31), 2**31, -(2**31) - 1]),
            [2**31 - 1, -(2**31), "2147483648", "-2147483649"],
        )

    def test_enums_and_booleans(self) -> None:
        """An IntEnum member becomes a plain int; booleans stay booleans."""
        value = sanitise([GeniCode.BADARGS, True, False])
        self.assertEqual(value, [1, True, False])
        self.assertIs(type(value[0]), int)
        self.assertIs(value[1], True)

    def test_tuples_become_lists(self) -> None:
        """Tuples become arrays."""
        self.assertEqual(sanitise(("a", ("b",))), ["a", ["b"]])

    def test_invalid_xml_characters_replaced(self) -> None:
        """Characters XML 1.0 forbids are replaced so the reply stays parseable."""
        value = sanitise({"out\x01": "a\x00b\ud800c\td"})
        self.assertEqual(value, {"out\ufffd": "a\ufffdb\ufffdc\td"})
        self.assertEqual(parse_response(dump_response(value)), value)

    def test_unencodable_refused(self) -> None:
        """Objects without an XML-RPC form and non-string keys raise TypeError."""
        self.assertRaises(TypeError, sanitise, object())
        self.assertRaises(TypeError, sanitise, {1: "a"})
        self.assertRaises(ValueError, sanitise, float("nan"))

    def test_dump_response_never_emits_nil_or_datetime(self) -> None:
        """An encoded reply has no nil, no dateTime and no i8 element."""
        data = dump_response(
            {"value": {"geni_error": None, "when": datetime(2026, 1, 1), "big": 2**40}, "output": None}
        )
        self.assertNotIn(b"<nil", data)
        self.assertNotIn(b"dateTime", data)
        self.assertNotIn(b"<i8", data)
        self.assertEqual(
            parse_response(data),
            {"value": {"when": "2026-01-01T00:00:00Z", "big": "1099511627776"}},
        )

    @given(
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.text()
            | st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
            lambda children: st.lists(children, max_size=4)
            | st.dictionaries(st.text(alphabet=st.characters(exclude_characters="\r"), max_size=8), children, max_size=4),
            max_leaves=20,
        )
    )
    def test_any_sanitised_value_encodes(self, value: Any) -> None:
        """Every sanitised value encodes without nil and decodes to itself."""
        clean = sanitise(value)
        data = dump_response(clean)
        self.assertNotIn(b"<nil", data)
        self.assertEqual(parse_response(data), clean)


def _call_with(value: str) -> bytes:
    """A GetVersion call whose only parameter is C{<value>value</value>}."""
    return (
        "<?xml version='1.0'?><methodCall><methodName>GetVersion</methodName>"
        f"<params><param><value>{value}</value></param></params></methodCall>"
    ).encode("utf-8")


def _params_with(inner: str) -> bytes:
    """A call of C{x} whose C{<params>} hold C{inner}."""
    return f"<methodCall><methodName>x</methodName><params>{inner}</params></methodCall>".encode("utf-8")


MALFORMED_CALLS: dict[str, tuple[bytes, int, str]] = {
    # name: (body, fault code, words the reason must contain)
    "unknown type": (_call_with("<foo>1</foo>"), INVALID_REQUEST, "<value> holds an unknown type <foo>"),
    "int text": (_call_with("<int>abc</int>"), INVALID_REQUEST, '<int> holds "abc", which is not a whole number'),
    "i4 fraction": (_call_with("<i4>1.5</i4>"), INVALID_REQUEST, '<i4> holds "1.5"'),
    "boolean word": (_call_with("<boolean>yes</boolean>"), INVALID_REQUEST, "which is not 0 or 1"),
    "double text": (_call_with("<double>x</double>"), INVALID_REQUEST, "<double> holds"),
    "date text": (_call_with("<dateTime.iso8601>yesterday</dateTime.iso8601>"), INVALID_REQUEST, "not a date and time"),
    "base64 padding": (_call_with("<base64>abc</base64>"), INVALID_REQUEST, "which is not base64"),
    "member without name": (
        _call_with("<struct><member><value><int>1</int></value></member></struct>"),
        INVALID_REQUEST,
        "<member> must hold its <name> before its <value>",
    ),
    "member without value": (
        _call_with("<struct><member><name>a</name></member></struct>"),
        INVALID_REQUEST,
        "<member> has no <value>",
    ),
    "member with two names": (
        _call_with("<struct><member><name>a</name><name>b</name><value>1</value></member></struct>"),
        INVALID_REQUEST,
        "<member> holds more than one <name>",
    ),
    "array without data": (_call_with("<array><value>1</value></array>"), INVALID_REQUEST, "<array> may not hold <value>"),
    "two values": (_call_with("<int>1</int><int>2</int>"), INVALID_REQUEST, "<value> holds more than one value"),
    "text in a struct": (_call_with("<struct>hello</struct>"), INVALID_REQUEST, '<struct> holds text "hello"'),
    "element in a string": (_call_with("<string><b>x</b></string>"), INVALID_REQUEST, "<string> holds an element <b>"),
    "value in params": (_params_with("<value>1</value>"), INVALID_REQUEST, "<params> may not hold <value>"),
    "param without value": (_params_with("<param></param>"), INVALID_REQUEST, "<param> has no <value>"),
    "no method name": (b"<methodCall><params/></methodCall>", INVALID_REQUEST, "<methodCall> has no <methodName>"),
    "wrong root": (b"<foo/>", INVALID_REQUEST, "expected <methodCall>, got <foo>"),
    "a response": (dump_response(1), INVALID_REQUEST, "got <methodResponse>"),
    "mismatched tag": (
        _params_with("<param></value></param>"), PARSE_ERROR, "not well-formed XML: mismatched tag at line 1, column 56"
    ),
    "second line": (b"<methodCall>\n<methodName>x</methodNam></methodCall>", PARSE_ERROR, "at line 2"),
    "not XML": (b"hello", PARSE_ERROR, "not well-formed XML"),
    "empty": (b"", PARSE_ERROR, "the XML-RPC call is empty"),
    "bad UTF-8": (b"<methodCall><methodName>\xff</methodName></methodCall>", PARSE_ERROR, "not well-formed XML"),
    "DOCTYPE": (BILLION_LAUGHS, PARSE_ERROR, "DOCTYPE declarations are not accepted"),
}
"""Malformed calls, what they must be answered with, and the words that must explain why."""

INTERNALS = re.compile(
    r"Error|Exception|Traceback|list index|out of range|invalid literal|base 10|%Y|binascii|"
    r"Unmarshaller|expat|\bNone\b|'|\w\("
)
"""What gives Python's internals away: class names, built-in messages, reprs, calls."""


class FaultWordingTests(SynchronousTestCase):
    """Every refusal of a malformed call says in words what is wrong, with nothing of Python in it."""

    def test_matrix(self) -> None:
        """Each malformed call is refused with its fault code and a reason that names the problem."""
        for name, (body, code, words) in MALFORMED_CALLS.items():
            with self.subTest(name):
                error = self.assertRaises(XmlRpcDecodeError, parse_call, body)
                self.assertEqual(error.fault_code, code, error.reason)
                self.assertIn(words, error.reason)
                self.assertIsNone(INTERNALS.search(error.reason), error.reason)

    def test_quirks_still_accepted(self) -> None:
        """Indentation, namespaced types and untyped values are not mistaken for malformed XML-RPC."""
        body = (
            b"<?xml version='1.0'?>\n<methodCall>\n <methodName>x</methodName>\n <params>\n  <param>\n"
            b"   <value>\n    <struct>\n     <member>\n      <name>a</name>\n      <value><ex:nil/></value>\n"
            b"     </member>\n     <member><name>b</name><value>text</value></member>\n    </struct>\n   </value>\n"
            b"  </param>\n </params>\n</methodCall>\n"
        )
        self.assertEqual(parse_call(body), ("x", ({"a": None, "b": "text"},)))

    def test_response_wording(self) -> None:
        """A malformed response is described as a response."""
        error = self.assertRaises(XmlRpcDecodeError, parse_response, b"<methodResponse><params><param></param></params></methodResponse>")
        self.assertEqual(error.reason, "invalid XML-RPC response: <param> has no <value>")


class EncodedResponseTests(SynchronousTestCase):
    """An answer encoded once is sent as it was encoded and cannot change."""

    def test_sent_as_encoded(self) -> None:
        """dump_response gives the encoded body, the same bytes as encoding the struct."""
        struct = {"code": {"geni_code": 0}, "value": "<rspec a='1'>&</rspec>", "output": None}
        encoded = encoded_response(struct)
        self.assertEqual(encoded, struct)
        self.assertEqual(dump_response(encoded), dump_response(struct))
        self.assertIs(dump_response(encoded), encoded.body)

    def test_read_only(self) -> None:
        """Changing an encoded answer is refused, so its body cannot go stale."""
        encoded = encoded_response({"value": 1})
        self.assertRaises(TypeError, encoded.__setitem__, "value", 2)
        self.assertRaises(TypeError, encoded.update, {"value": 2})
        self.assertRaises(TypeError, encoded.pop, "value")
        self.assertEqual(encoded, {"value": 1})


class DecodedCallsTests(SynchronousTestCase):
    """A repeated call is decoded once, and every caller gets arguments of its own."""

    def test_repeated_call_decoded_alike(self) -> None:
        """The same body decodes to equal calls, each with its own structs and arrays."""
        decode = DecodedCalls().parse_call
        body = dump_call("ListResources", [[{"geni_type": "geni_sfa", "geni_value": "<c/>"}], {"geni_compressed": True}])
        method, (credentials, options) = decode(body)
        self.assertEqual(decode(body), parse_call(body))
        options["geni_compressed"] = False
        credentials.append("changed")
        credentials[0]["geni_value"] = "changed"
        self.assertEqual(decode(body), parse_call(body))
        self.assertEqual(decode(body)[1][1], {"geni_compressed": True})

    def test_malformed_refused_every_time(self) -> None:
        """A refused body is refused again when repeated: only decoded calls are remembered."""
        decode = DecodedCalls().parse_call
        for _ in range(2):
            self.assertRaises(XmlRpcDecodeError, decode, BILLION_LAUGHS)
