# -*- test-case-name: tests.test_foundation -*-
"""
GENI error codes and the exception every layer raises for an expected error.

An expected error becomes the GENI return struct C{{code: {geni_code,
am_type, am_code}, value, output}}; it is never an XML-RPC fault.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

AM_TYPE = "geniam"


class GeniCode(IntEnum):
    """The GENI AM API error codes (geni-error-codes.xml and its revisions)."""

    SERVERBUSY = -32001
    SUCCESS = 0
    BADARGS = 1
    ERROR = 2
    FORBIDDEN = 3
    BADVERSION = 4
    SERVERERROR = 5
    TOOBIG = 6
    REFUSED = 7
    TIMEDOUT = 8
    DBERROR = 9
    RPCERROR = 10
    UNAVAILABLE = 11
    SEARCHFAILED = 12
    UNSUPPORTED = 13
    BUSY = 14
    EXPIRED = 15
    INPROGRESS = 16
    ALREADYEXISTS = 17
    MISSINGARGS = 18
    OUTOFRANGE = 19
    CREDENTIAL_INVALID = 20
    CREDENTIAL_EXPIRED = 21
    CREDENTIAL_MISMATCH = 22
    CREDENTIAL_SIGNER_UNTRUSTED = 23
    VLAN_UNAVAILABLE = 24
    INSUFFICIENT_BANDWIDTH = 25
    INSUFFICIENT_NODES = 26


class GeniError(Exception):
    """
    An expected failure with a GENI code and a human-readable message.

    @ivar code: the L{GeniCode} to report.
    @ivar output: the message shown to the caller.
    @ivar value: an optional hint returned as C{value} (never C{None} on the wire).
    """

    def __init__(self, code: GeniCode, output: str, value: Any = None) -> None:
        super().__init__(output)
        self.code = GeniCode(code)
        self.output = output
        self.value = value

    def __repr__(self) -> str:
        return f"GeniError({self.code.name}, {self.output!r})"

    def as_struct(self) -> dict[str, Any]:
        """Return the GENI return struct for this error."""
        return error_struct(self.code, self.output, self.value)


def success_struct(value: Any, output: str = "") -> dict[str, Any]:
    """Return the GENI return struct for a successful call."""
    return {
        "code": {"geni_code": int(GeniCode.SUCCESS), "am_type": AM_TYPE, "am_code": 0},
        "value": value,
        "output": output,
    }


def error_struct(code: GeniCode, output: str, value: Any = None) -> dict[str, Any]:
    """Return the GENI return struct for a failed call (value is omitted when None)."""
    struct: dict[str, Any] = {
        "code": {"geni_code": int(code), "am_type": AM_TYPE, "am_code": int(code)},
        "output": output,
    }
    struct["value"] = value if value is not None else ""
    return struct
