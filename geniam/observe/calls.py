# -*- test-case-name: tests.loopback.test_observe,tests.observe.test_observation -*-
"""
What the XML-RPC edge tells an observer about each call it answered.

L{geniam.protocols.xmlrpc.GeniXmlRpcResource} fills a L{CallFacts} while
it dispatches a call and hands it to its L{ICallObserver}; L{call_fields}
turns the facts into the named fields every call's log line, access log
line and metric uses. Nothing here knows about Prometheus.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zope.interface import Interface

from geniam.errors import GeniCode

FAULT = "fault"
"""The code label of a call answered with an XML-RPC fault (malformed, unknown method)."""


@dataclass
class CallFacts:
    """
    What the edge learnt about one call, filled in as dispatch goes.

    @ivar started: the observer's clock when the request was taken up.
    @ivar method: the XML-RPC method, once decoded (C{None}: malformed).
    @ivar caller: the verified caller (a GID with C{urn}), once identified.
    @ivar args: the bound arguments, once checked.
    @ivar result: the GENI return struct sent back, or C{None} for a fault.
    @ivar peer: the client's address.
    """

    started: float
    peer: str = ""
    method: str | None = None
    caller: Any = None
    args: tuple[Any, ...] = ()
    result: Any = None


class ICallObserver(Interface):
    """Told about every call an XML-RPC resource answered."""

    def seconds():  # type: ignore[misc]
        """The observer's clock, in seconds (when a call starts and ends)."""

    def called(request, facts):  # type: ignore[misc]
        """The call C{facts} (a L{CallFacts}) made in the HTTP C{request} has been answered."""


def _urns(values: Iterable[Any]) -> Iterable[str]:
    for value in values:
        if isinstance(value, str) and value.startswith("urn:publicid:IDN+"):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from (item for item in value if isinstance(item, str) and item.startswith("urn:publicid:IDN+"))


def _kind(urn: str) -> str:
    parts = urn.split("+")
    return parts[2] if len(parts) > 3 else ""


def geni_code_of(result: Any) -> int | None:
    """The C{geni_code} of a GENI return struct, or None if it is not one."""
    if isinstance(result, dict) and isinstance(result.get("code"), dict):
        code = result["code"].get("geni_code")
        if isinstance(code, int) and not isinstance(code, bool):
            return code
    return None


def code_label(code: int | None) -> str:
    """A GENI code as a metric label and log field: its name (C{SUCCESS}, C{BUSY}, ...) or number, or L{FAULT}."""
    if code is None:
        return FAULT
    try:
        return GeniCode(code).name
    except ValueError:
        return str(code)


def _result_slivers(result: Any) -> list[str]:
    value = result.get("value") if isinstance(result, dict) else None
    slivers = value.get("geni_slivers") if isinstance(value, dict) else value if isinstance(value, list) else None
    found: list[str] = []
    for sliver in slivers if isinstance(slivers, list) else ():
        urn = sliver.get("geni_sliver_urn") if isinstance(sliver, dict) else None
        if isinstance(urn, str):
            found.append(urn)
    return found


def call_fields(facts: CallFacts, finished: float) -> dict[str, Any]:
    """
    The named fields of one answered call: C{method}, C{caller_urn},
    C{slice_urn}, C{sliver_urns} (named in the arguments, or made by the
    call), C{geni_code} (a number, None for a fault), C{geni_code_name},
    C{duration} (seconds) and C{peer}.
    """
    named = list(_urns(facts.args))
    slices = [urn for urn in named if _kind(urn) == "slice"]
    slivers = [urn for urn in named if _kind(urn) == "sliver"]
    for urn in _result_slivers(facts.result):
        if urn not in slivers:
            slivers.append(urn)
    code = geni_code_of(facts.result)
    caller_urn = getattr(facts.caller, "urn", None)
    return {
        "method": facts.method or "",
        "caller_urn": str(caller_urn) if caller_urn else "",
        "slice_urn": slices[0] if slices else "",
        "sliver_urns": tuple(slivers),
        "geni_code": code,
        "geni_code_name": code_label(code),
        "duration": round(max(0.0, finished - facts.started), 6),
        "peer": facts.peer,
    }
