# -*- test-case-name: tests.test_foundation -*-
"""
GENI URNs: C{urn:publicid:IDN+<authority>+<type>+<name>}.

Authority strings, slice names and user names compare case-insensitively
but keep their case; L{URN.key} is the normalised form to compare and index.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from geniam.errors import GeniCode, GeniError

PREFIX = "urn:publicid:IDN+"
_AUTHORITY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*(:[A-Za-z0-9][A-Za-z0-9._\-]*)*$")
_TYPE = re.compile(r"^[a-z][a-z_]*$")
_NAME = re.compile(r"^[^\s?/#]+$")
_SLICE_NAME = re.compile(r"^[a-zA-Z0-9][-a-zA-Z0-9]{0,18}$")
_SLIVER_NAME = re.compile(r"^[a-zA-Z0-9.\-_]+$")
MAX_URN_LENGTH = 512


@dataclass(frozen=True)
class URN:
    """A parsed GENI URN."""

    authority: str
    type: str
    name: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.authority}+{self.type}+{self.name}"

    @cached_property
    def key(self) -> str:
        """The case-normalised text used to compare and index URNs (computed once)."""
        name = self.name if self.type not in ("slice", "user", "authority") else self.name.lower()
        return f"{PREFIX}{self.authority.lower()}+{self.type}+{name}"

    def is_within(self, authority: str) -> bool:
        """True if this URN's authority equals C{authority} or is a sub-authority of it."""
        mine, theirs = self.authority.lower(), authority.lower()
        return mine == theirs or mine.startswith(theirs + ":")


def parse_urn(text: object, expected_type: str | None = None) -> URN:
    """
    Parse and validate a URN.

    @param expected_type: if given, the URN must be of this type.
    @raise GeniError: BADARGS for anything that is not a valid GENI URN.
    """
    if not isinstance(text, str):
        raise GeniError(GeniCode.BADARGS, f"expected a URN string, got {type(text).__name__}")
    if len(text) > MAX_URN_LENGTH:
        raise GeniError(GeniCode.BADARGS, "URN too long")
    if not text.lower().startswith(PREFIX.lower()):
        raise GeniError(GeniCode.BADARGS, f"not a GENI URN: {text[:80]!r}")
    parts = text[len(PREFIX):].split("+", 2)
    if len(parts) != 3 or not all(parts):
        raise GeniError(GeniCode.BADARGS, f"malformed URN (want authority+type+name): {text[:80]!r}")
    authority, kind, name = parts
    if not _AUTHORITY.match(authority):
        raise GeniError(GeniCode.BADARGS, f"malformed URN authority {authority[:80]!r}")
    if not _TYPE.match(kind):
        raise GeniError(GeniCode.BADARGS, f"malformed URN type {kind[:40]!r}")
    if not _NAME.match(name):
        raise GeniError(GeniCode.BADARGS, f"malformed URN name {name[:80]!r}")
    if kind == "slice" and not _SLICE_NAME.match(name):
        raise GeniError(GeniCode.BADARGS, f"invalid slice name {name[:80]!r}")
    if kind == "sliver" and not _SLIVER_NAME.match(name):
        raise GeniError(GeniCode.BADARGS, f"invalid sliver name {name[:80]!r}")
    if expected_type is not None and kind != expected_type:
        raise GeniError(GeniCode.BADARGS, f"expected a {expected_type} URN, got a {kind} URN: {text[:80]!r}")
    return URN(authority, kind, name)


def same_urn(a: str, b: str) -> bool:
    """Compare two URN strings the GENI way (authority and slice/user names case-insensitive)."""
    try:
        return parse_urn(a).key == parse_urn(b).key
    except GeniError:
        return a == b
