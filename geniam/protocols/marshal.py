# -*- test-case-name: tests.protocols.test_marshal -*-
"""
XML-RPC encoding and decoding shared by the server and the client.

Decoding uses expat directly with a hardened set-up: a document that
declares a DOCTYPE (and so any ENTITY) is refused before its internal
subset is read, entities are never resolved, and element nesting is
bounded. Encoding first passes every value through L{sanitise}, which
removes what GENI clients cannot read: C{nil}, C{dateTime.iso8601} and
integers beyond 32 bits.

All functions here are pure and thread-safe, so they may run in a worker
thread for large documents.
"""

from __future__ import annotations

import math
import re
import threading
import xmlrpc.client
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from xml.parsers import expat

from geniam.protocols.grammar import XmlRpcGrammar, XmlRpcGrammarError
from geniam.timeutil import format_time, from_datetime

PARSE_ERROR = -32700
"""Fault code for a document that is not well-formed or is refused (DOCTYPE, entities, depth)."""

INVALID_REQUEST = -32600
"""Fault code for well-formed XML that is not an XML-RPC call or response."""

METHOD_NOT_FOUND = -32601
"""Fault code for a method name the server does not serve."""

INTERNAL_ERROR = -32603
"""Fault code for a failure of the XML-RPC layer itself."""

MAX_DEPTH = 64
"""Default bound on element nesting in a decoded document."""

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1

_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class XmlRpcDecodeError(Exception):
    """
    A document could not be decoded as the expected XML-RPC message.

    @ivar fault_code: L{PARSE_ERROR} or L{INVALID_REQUEST}, the fault a
        server answers with.
    @ivar reason: a short description, safe to show to the sender.
    """

    def __init__(self, fault_code: int, reason: str) -> None:
        super().__init__(reason)
        self.fault_code = fault_code
        self.reason = reason


class _Refused(Exception):
    """Raised from an expat handler to stop parsing a refused document."""


class _HardenedParser:
    """
    Feed one document to an L{xmlrpc.client.Unmarshaller} through expat,
    refusing DTDs and deep nesting, and checking the document's shape
    against L{XmlRpcGrammar} so that every refusal can be said in words.
    """

    def __init__(self, target: xmlrpc.client.Unmarshaller, root: str, max_depth: int) -> None:
        self._target = target
        self._grammar = XmlRpcGrammar(root)
        self._noun = "call" if root == "methodCall" else "response"
        self._max_depth = max_depth
        self._depth = 0
        parser = expat.ParserCreate(None, None)
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        parser.StartDoctypeDeclHandler = self._refuse_doctype
        parser.EntityDeclHandler = self._refuse_entity
        parser.UnparsedEntityDeclHandler = self._refuse_entity
        parser.ExternalEntityRefHandler = self._refuse_external
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.buffer_text = True
        # Expat hands over text, which must not be decoded again.
        target.xml(None, None)  # type: ignore[arg-type]
        self._parser = parser

    def _refuse_doctype(self, *args: object) -> None:
        raise _Refused("DOCTYPE declarations are not accepted")

    def _refuse_entity(self, *args: object) -> None:
        raise _Refused("entity declarations and references are not accepted")

    def _refuse_external(self, context: str, base: str | None, system_id: str | None, public_id: str | None) -> int:
        raise _Refused("external entities are not accepted")

    def _start(self, tag: str, attrs: dict[str, str]) -> None:
        self._depth += 1
        if self._depth > self._max_depth:
            raise _Refused(f"elements are nested deeper than {self._max_depth}")
        self._grammar.start(tag)
        self._target.start(tag, attrs)

    def _text(self, data: str) -> None:
        self._grammar.text(data)
        self._target.data(data)

    def _end(self, tag: str) -> None:
        self._depth -= 1
        try:
            self._target.end(tag)
        except Exception:  # the decoder's ValueError, binascii.Error, ...: say it in words
            raise XmlRpcGrammarError(self._grammar.value_problem(tag)) from None
        self._grammar.end(tag)

    def parse(self, data: bytes) -> None:
        """
        Parse the whole document.

        @raise XmlRpcDecodeError: with L{PARSE_ERROR} for malformed or
            refused XML, L{INVALID_REQUEST} for a document that is not
            XML-RPC or holds values that cannot be read.
        """
        try:
            self._parser.Parse(data, True)
        except _Refused as e:
            raise XmlRpcDecodeError(PARSE_ERROR, f"the XML-RPC {self._noun} is refused: {e}") from None
        except expat.ExpatError as e:
            raise XmlRpcDecodeError(PARSE_ERROR, self._not_well_formed(data, e)) from None
        except XmlRpcGrammarError as e:
            raise XmlRpcDecodeError(INVALID_REQUEST, f"invalid XML-RPC {self._noun}: {e.reason}") from None

    def _not_well_formed(self, data: bytes, error: expat.ExpatError) -> str:
        if not data.strip():
            return f"the XML-RPC {self._noun} is empty"
        what = expat.errors.messages.get(error.code, "not well-formed")
        return (
            f"the XML-RPC {self._noun} is not well-formed XML: {what}"
            f" at line {error.lineno}, column {error.offset + 1}"
        )


def _unmarshal(data: bytes, root: str, max_depth: int) -> tuple[xmlrpc.client.Unmarshaller, tuple[Any, ...]]:
    target = xmlrpc.client.Unmarshaller(use_builtin_types=True)
    _HardenedParser(target, root, max_depth).parse(data)
    try:
        values = target.close()
    except xmlrpc.client.Fault:
        raise
    except Exception:
        raise XmlRpcDecodeError(INVALID_REQUEST, f"invalid XML-RPC: an incomplete <{root}>") from None
    return target, values


def parse_call(data: bytes, max_depth: int = MAX_DEPTH) -> tuple[str, tuple[Any, ...]]:
    """
    Decode an XML-RPC C{methodCall}.

    Values decode to Python built-ins: C{dateTime.iso8601} to naive
    L{datetime}, C{base64} to L{bytes}, C{nil} (if a client sends it) to
    C{None}.

    @param data: the request body.
    @param max_depth: the deepest element nesting accepted.
    @return: the method name and the tuple of parameters.
    @raise XmlRpcDecodeError: the document is malformed, refused, or not a
        method call.
    """
    try:
        target, params = _unmarshal(data, "methodCall", max_depth)
    except xmlrpc.client.Fault:
        raise XmlRpcDecodeError(INVALID_REQUEST, "invalid XML-RPC: a fault is not a method call") from None
    name = target.getmethodname()
    if not isinstance(name, str) or not name:
        raise XmlRpcDecodeError(INVALID_REQUEST, "invalid XML-RPC: no methodName")
    return name, params


def _fresh(value: Any) -> Any:
    """A copy of a decoded value whose structs and arrays are new (the rest is immutable)."""
    if isinstance(value, dict):
        return {key: _fresh(member) for key, member in value.items()}
    if isinstance(value, list):
        return [_fresh(item) for item in value]
    if isinstance(value, xmlrpc.client.Binary):
        return xmlrpc.client.Binary(value.data)
    return value


class DecodedCalls:
    """
    L{parse_call} that remembers the calls it decoded lately: a body
    identical to a recent one (a client repeating a call: the same
    credentials, the same options) is not parsed and checked again. Each
    caller gets its own copy of the structs and arrays, so a handler that
    changes its arguments changes nobody else's. Thread-safe.

    @param size: how many bodies to remember.
    @param max_body: the largest body remembered, in bytes.
    """

    def __init__(self, size: int = 128, max_body: int = 64 * 1024, max_depth: int = MAX_DEPTH) -> None:
        self._size = size
        self._max_body = max_body
        self._max_depth = max_depth
        self._known: OrderedDict[bytes, tuple[str, tuple[Any, ...]]] = OrderedDict()
        self._lock = threading.Lock()

    def parse_call(self, data: bytes) -> tuple[str, tuple[Any, ...]]:
        """Decode a C{methodCall} as L{parse_call} does."""
        if len(data) > self._max_body:
            return parse_call(data, self._max_depth)
        data = bytes(data)
        with self._lock:
            known = self._known.get(data)
            if known is not None:
                self._known.move_to_end(data)
        if known is None:
            known = parse_call(data, self._max_depth)
            with self._lock:
                self._known[data] = known
                while len(self._known) > self._size:
                    self._known.popitem(last=False)
        method, params = known
        return method, tuple(_fresh(param) for param in params)


def parse_response(data: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """
    Decode an XML-RPC C{methodResponse}.

    @param data: the response body.
    @param max_depth: the deepest element nesting accepted.
    @return: the single returned value.
    @raise xmlrpc.client.Fault: the response is a fault.
    @raise XmlRpcDecodeError: the document is malformed, refused, or not a
        response with exactly one value.
    """
    _, values = _unmarshal(data, "methodResponse", max_depth)
    if len(values) != 1:
        raise XmlRpcDecodeError(INVALID_REQUEST, f"invalid XML-RPC: {len(values)} values in a response")
    return values[0]


def _clean_text(text: str) -> str:
    text = str(text)
    if _INVALID_XML_CHARS.search(text):
        return _INVALID_XML_CHARS.sub("\ufffd", text)
    return text


def sanitise(value: Any, _depth: int = 0) -> Any:
    """
    Return C{value} made safe for any GENI XML-RPC client.

      - C{None} members of a struct are dropped; C{None} elsewhere becomes C{""};
      - L{datetime} and L{xmlrpc.client.DateTime} become RFC 3339 strings
        (a naive datetime is taken as UTC);
      - integers outside 32 bits become decimal strings, C{bool} stays a
        boolean, C{IntEnum} members become plain integers;
      - tuples become arrays; mappings become structs with string keys;
      - characters XML 1.0 forbids are replaced by U+FFFD.

    @raise TypeError: a value has no XML-RPC form (an arbitrary object,
        a non-string struct key).
    @raise ValueError: a float is not finite, or nesting is deeper than
        L{MAX_DEPTH}.
    """
    if _depth > MAX_DEPTH:
        raise ValueError(f"value nested deeper than {MAX_DEPTH}")
    if value is None:
        return ""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        number = int(value)
        return number if INT32_MIN <= number <= INT32_MAX else str(number)
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot send the float {value!r}")
        return float(value)
    if isinstance(value, Mapping):
        struct: dict[str, Any] = {}
        for key, member in value.items():
            if not isinstance(key, str):
                raise TypeError(f"struct keys must be strings, not {type(key).__name__}")
            if member is not None:
                struct[_clean_text(key)] = sanitise(member, _depth + 1)
        return struct
    if isinstance(value, (list, tuple)):
        return [sanitise(item, _depth + 1) for item in value]
    if isinstance(value, datetime):
        return format_time(from_datetime(value))
    if isinstance(value, xmlrpc.client.DateTime):
        return format_time(from_datetime(datetime.strptime(value.value, "%Y%m%dT%H:%M:%S")))
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, xmlrpc.client.Binary):
        return value
    raise TypeError(f"cannot send {type(value).__name__} values over XML-RPC")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


class _Marshaller(xmlrpc.client.Marshaller):
    """A marshaller whose strings keep carriage returns (as C{&#13;})."""

    dispatch = dict(xmlrpc.client.Marshaller.dispatch)

    def dump_unicode(self, value: str, write: Callable[[str], Any], escape: Any = None) -> None:
        write("<value><string>")
        write(_escape(value))
        write("</string></value>\n")

    dispatch[str] = dump_unicode  # type: ignore[assignment]


_HEADER = "<?xml version='1.0' encoding='utf-8'?>\n"


def dump_call(method: str, params: tuple[Any, ...] | list[Any]) -> bytes:
    """
    Encode a C{methodCall} with sanitised parameters.

    @raise TypeError: see L{sanitise}.
    @raise ValueError: see L{sanitise}.
    """
    clean = tuple(sanitise(list(params)))
    body = _Marshaller("utf-8", allow_none=False).dumps(clean)
    text = f"{_HEADER}<methodCall>\n<methodName>{_escape(method)}</methodName>\n{body}</methodCall>\n"
    return text.encode("utf-8")


class EncodedResponse(dict):  # type: ignore[type-arg]
    """
    A return value sent unchanged to many callers, encoded once: a read-only
    struct that also holds its whole C{methodResponse} (L{dump_response}
    returns it without walking the value again). Make one with
    L{encoded_response}.

    @ivar body: the encoded C{methodResponse}.
    """

    __slots__ = ("body",)
    body: bytes

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("an encoded response cannot change")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _read_only  # type: ignore[assignment]


def encoded_response(value: Mapping[str, Any]) -> EncodedResponse:
    """
    Encode the struct C{value} once for L{dump_response}; the struct must
    not change afterwards (its copy in the result is read-only at the top).

    @raise TypeError: see L{sanitise}.
    @raise ValueError: see L{sanitise}.
    """
    encoded = EncodedResponse(value)
    encoded.body = dump_response(value)
    return encoded


def dump_response(value: Any) -> bytes:
    """
    Encode a C{methodResponse} carrying the sanitised C{value} (an
    L{EncodedResponse} gives its body as it is).

    @raise TypeError: see L{sanitise}.
    @raise ValueError: see L{sanitise}.
    """
    if type(value) is EncodedResponse:
        return value.body
    body = _Marshaller("utf-8", allow_none=False).dumps((sanitise(value),))
    return f"{_HEADER}<methodResponse>\n{body}</methodResponse>\n".encode("utf-8")


def dump_fault(code: int, message: str) -> bytes:
    """Encode a C{methodResponse} carrying the fault C{code} with C{message}."""
    fault = xmlrpc.client.Fault(int(code), _clean_text(message))
    body = _Marshaller("utf-8", allow_none=False).dumps(fault)
    return f"{_HEADER}<methodResponse>\n{body}</methodResponse>\n".encode("utf-8")
