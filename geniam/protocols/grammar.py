# -*- test-case-name: tests.protocols.test_marshal -*-
"""
The shape of an XML-RPC document, checked element by element as it is
parsed, so that what is wrong with a malformed call can be said in words
("a <member> has no <name>") rather than as the decoder's internal error.

L{XmlRpcGrammar} is fed the parser's events; it raises
L{XmlRpcGrammarError} at the first element, text or value that does not
fit the XML-RPC specification. Namespace prefixes (C{ex:nil}, as Apache
XML-RPC writes) are ignored, as Python's decoder ignores them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SCALAR_TYPES: frozenset[str] = frozenset(
    {
        "string",
        "int",
        "i1",
        "i2",
        "i4",
        "i8",
        "biginteger",
        "boolean",
        "double",
        "float",
        "bigdecimal",
        "dateTime.iso8601",
        "base64",
        "nil",
    }
)
"""The scalar types a C{<value>} may hold (those Python's decoder reads)."""

_CHILDREN: dict[str, frozenset[str]] = {
    "methodCall": frozenset({"methodName", "params"}),
    "methodResponse": frozenset({"params", "fault"}),
    "params": frozenset({"param"}),
    "param": frozenset({"value"}),
    "fault": frozenset({"value"}),
    "value": SCALAR_TYPES | {"array", "struct"},
    "array": frozenset({"data"}),
    "data": frozenset({"value"}),
    "struct": frozenset({"member"}),
    "member": frozenset({"name", "value"}),
}
"""The elements each container may hold; anything not named here holds text only."""

_EXACTLY_ONE: dict[str, tuple[str, ...]] = {
    "param": ("value",),
    "fault": ("value",),
    "array": ("data",),
    "member": ("name", "value"),
}
"""Children a container must hold exactly once."""

_VALUE_PROBLEMS: dict[str, str] = {
    "int": "is not a whole number",
    "i1": "is not a whole number",
    "i2": "is not a whole number",
    "i4": "is not a whole number",
    "i8": "is not a whole number",
    "biginteger": "is not a whole number",
    "boolean": "is not 0 or 1",
    "double": "is not a number",
    "float": "is not a number",
    "bigdecimal": "is not a number",
    "dateTime.iso8601": "is not a date and time of the form 20250131T12:00:00",
    "base64": "is not base64",
}
"""What is wrong with a scalar's text when the decoder cannot read it."""

_PREVIEW = 40


class XmlRpcGrammarError(Exception):
    """
    A document does not have the shape of XML-RPC.

    @ivar reason: what is wrong, in words, safe to show to the sender.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def local_name(tag: str) -> str:
    """The element name without a namespace prefix."""
    return tag.rsplit(":", 1)[-1]


def quoted(text: str, limit: int = _PREVIEW) -> str:
    """C{text} between double quotes, shortened and with control characters shown as C{?}."""
    shown = "".join(c if c.isprintable() else "?" for c in text.strip())
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f'"{shown}"'


@dataclass
class _Open:
    """One element being parsed."""

    tag: str
    children: dict[str, int] = field(default_factory=dict)
    text: str = ""


class XmlRpcGrammar:
    """
    Follow a document's elements and refuse the first that XML-RPC does not allow.

    Call L{start}, L{text} and L{end} as the parser meets elements and text;
    each raises L{XmlRpcGrammarError} for a misplaced element or text, an
    unknown type, or a container missing a part.
    """

    def __init__(self, root: str) -> None:
        """
        @param root: the root element expected (C{methodCall} or C{methodResponse}).
        """
        self._root = root
        self._stack: list[_Open] = []

    def start(self, tag: str) -> None:
        """An element opens."""
        name = local_name(tag)
        if not self._stack:
            if name != self._root:
                raise XmlRpcGrammarError(f"expected <{self._root}>, got <{name}>")
        else:
            parent = self._stack[-1]
            allowed = _CHILDREN.get(parent.tag)
            if parent.tag == "value":
                if name not in _CHILDREN["value"]:
                    raise XmlRpcGrammarError(f"<value> holds an unknown type <{name}>")
                if parent.children:
                    raise XmlRpcGrammarError("<value> holds more than one value")
                if parent.text.strip():
                    raise XmlRpcGrammarError(f"<value> holds both text and <{name}>")
            elif allowed is None:
                raise XmlRpcGrammarError(f"<{parent.tag}> holds an element <{name}>; it may hold only text")
            elif name not in allowed:
                expected = ", ".join(f"<{child}>" for child in sorted(allowed))
                raise XmlRpcGrammarError(f"<{parent.tag}> may not hold <{name}> (only {expected})")
            if name in _EXACTLY_ONE.get(parent.tag, ()) and parent.children.get(name):
                raise XmlRpcGrammarError(f"<{parent.tag}> holds more than one <{name}>")
            if parent.tag == "member" and name == "value" and not parent.children.get("name"):
                raise XmlRpcGrammarError("a <member> must hold its <name> before its <value>")
            parent.children[name] = parent.children.get(name, 0) + 1
        self._stack.append(_Open(name))

    def text(self, data: str) -> None:
        """Text arrives inside the current element."""
        if not self._stack:
            return
        current = self._stack[-1]
        if current.tag in _CHILDREN and current.tag != "value":
            if data.strip():
                raise XmlRpcGrammarError(f"<{current.tag}> holds text {quoted(data)} outside its elements")
            return
        if current.tag == "value" and current.children and data.strip():
            raise XmlRpcGrammarError(f"<value> holds both <{next(iter(current.children))}> and text")
        if len(current.text) <= _PREVIEW:
            current.text += data

    def end(self, tag: str) -> None:
        """The current element closes."""
        current = self._stack.pop()
        for child in _EXACTLY_ONE.get(current.tag, ()):
            if not current.children.get(child):
                raise XmlRpcGrammarError(f"<{current.tag}> has no <{child}>")
        if current.tag == "methodCall" and not current.children.get("methodName"):
            raise XmlRpcGrammarError("<methodCall> has no <methodName>")
        if current.tag == "methodResponse" and not current.children:
            raise XmlRpcGrammarError("<methodResponse> holds neither <params> nor <fault>")

    def value_problem(self, tag: str) -> str:
        """
        Say what is wrong with the scalar that just closed, whose text the decoder refused.

        Call it from the handler of the element's end, before L{end}.
        """
        name = local_name(tag)
        text = self._stack[-1].text if self._stack else ""
        problem = _VALUE_PROBLEMS.get(name, "cannot be read")
        return f"<{name}> holds {quoted(text)}, which {problem}"
