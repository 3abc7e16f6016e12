# -*- test-case-name: tests.trust.test_verifier -*-
"""
Which credential and which privilege each method needs.

GENI never standardised this; we follow the reference aggregate (gcf),
which maps AM API methods onto SFA operations and SFA privileges onto the
operations they allow:

    - C{Allocate}, C{Provision}, C{PerformOperationalAction}: C{createsliver}
      (so do the transaction methods C{BeginTransaction},
      C{UpdateTransaction}, C{CommitTransaction}, C{AbortTransaction})
    - C{Describe}, C{Status}: C{getsliceresources}
    - C{Renew}: C{renewsliver}; C{Delete}: C{deleteslice}; C{Shutdown}: C{shutdown}

A slice credential with C{sa}, C{embed} or C{control} allows the first
four operations, C{embed} also C{shutdown}; C{*} (ProtoGENI) and
C{authority} allow everything.

C{ListResources} needs a valid user credential of the caller (owner and
target both the caller); its privileges are not consulted, as in gcf, but
a slice credential does not stand in for it. C{GetVersion} needs no
credential at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

SLICE = "slice"
"""A method that needs a slice credential for the call's slice."""

USER = "user"
"""A method that needs a user credential of the caller."""

NONE = "none"
"""A method that needs no credential."""

ALL_OPERATIONS = "*"
"""Stands for every operation in L{PRIVILEGE_OPERATIONS}."""

CREATESLIVER = "createsliver"
"""SFA operation of Allocate, Provision and PerformOperationalAction."""

GETSLICERESOURCES = "getsliceresources"
"""SFA operation of Describe and Status."""

RENEWSLIVER = "renewsliver"
"""SFA operation of Renew."""

DELETESLICE = "deleteslice"
"""SFA operation of Delete."""

SHUTDOWN = "shutdown"
"""SFA operation of Shutdown."""

GETTICKET = "getticket"
"""SFA operation for obtaining a ticket (ProtoGENI-style reservations)."""

REDEEMTICKET = "redeemticket"
"""SFA operation for redeeming a ticket."""

_SLIVER_OPERATIONS = frozenset({CREATESLIVER, GETSLICERESOURCES, RENEWSLIVER, DELETESLICE})

PRIVILEGE_OPERATIONS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "*": frozenset({ALL_OPERATIONS}),
        "authority": frozenset({ALL_OPERATIONS}),
        "sa": _SLIVER_OPERATIONS | {GETTICKET, REDEEMTICKET, "sliverstatus", "listslices", "listnodes"},
        "embed": _SLIVER_OPERATIONS | {SHUTDOWN, GETTICKET, REDEEMTICKET, "sliverstatus"},
        "control": _SLIVER_OPERATIONS | {"sliverstatus", "startslice", "stopslice", "resetslice"},
        "bind": frozenset({GETTICKET, REDEEMTICKET, "loanresources"}),
        "info": frozenset({"listslices", "listnodes", "getpolicy"}),
        "resolve": frozenset({"resolve", "list", "getcredential"}),
        "refresh": frozenset({"remove", "update"}),
    }
)
"""The SFA operations each privilege allows (names lower-case)."""


@dataclass(frozen=True)
class MethodRule:
    """
    What a method needs.

    @ivar credential: L{SLICE}, L{USER} or L{NONE}.
    @ivar operation: the SFA operation a slice credential must allow
        (C{None} when any valid credential of the right kind will do).
    """

    credential: str
    operation: str | None = None

    def __post_init__(self) -> None:
        if self.credential not in (SLICE, USER, NONE):
            raise ValueError(f"unknown credential kind {self.credential!r}")


DEFAULT_METHODS: Mapping[str, MethodRule] = MappingProxyType(
    {
        "GetVersion": MethodRule(NONE),
        "ListResources": MethodRule(USER),
        "Allocate": MethodRule(SLICE, CREATESLIVER),
        "Provision": MethodRule(SLICE, CREATESLIVER),
        "PerformOperationalAction": MethodRule(SLICE, CREATESLIVER),
        "Describe": MethodRule(SLICE, GETSLICERESOURCES),
        "Status": MethodRule(SLICE, GETSLICERESOURCES),
        "Renew": MethodRule(SLICE, RENEWSLIVER),
        "Delete": MethodRule(SLICE, DELETESLICE),
        "Shutdown": MethodRule(SLICE, SHUTDOWN),
        "GetTicket": MethodRule(SLICE, GETTICKET),
        "UpdateSliver": MethodRule(SLICE, GETTICKET),
        "RedeemTicket": MethodRule(SLICE, REDEEMTICKET),
        "ReleaseTicket": MethodRule(SLICE, REDEEMTICKET),
        "DeleteSliver": MethodRule(SLICE, DELETESLICE),
        "DeleteSlice": MethodRule(SLICE, DELETESLICE),
        "Resolve": MethodRule(SLICE, GETSLICERESOURCES),
        "SliverStatus": MethodRule(SLICE, GETSLICERESOURCES),
        "RenewSlice": MethodRule(SLICE, RENEWSLIVER),
        "BeginTransaction": MethodRule(SLICE, CREATESLIVER),
        "UpdateTransaction": MethodRule(SLICE, CREATESLIVER),
        "CommitTransaction": MethodRule(SLICE, CREATESLIVER),
        "AbortTransaction": MethodRule(SLICE, CREATESLIVER),
    }
)
"""The AM API v3 methods, the transaction methods served beside them, and the ProtoGENI component manager's (tickets: C{getticket}, C{redeemticket})."""


class PrivilegeTable:
    """
    Method rules and privilege-to-operation mapping, immutable.

    Extend it for further methods with L{with_methods}.
    """

    def __init__(
        self,
        methods: Mapping[str, MethodRule] = DEFAULT_METHODS,
        privileges: Mapping[str, Iterable[str]] = PRIVILEGE_OPERATIONS,
    ) -> None:
        self._methods = {name.lower(): rule for name, rule in methods.items()}
        self._names = {name.lower(): name for name in methods}
        self._privileges = {name.lower(): frozenset(op.lower() for op in ops) for name, ops in privileges.items()}

    def with_methods(self, methods: Mapping[str, MethodRule]) -> PrivilegeTable:
        """Return a table that also knows (or overrides) C{methods}."""
        merged = {self._names[key]: rule for key, rule in self._methods.items()}
        merged.update(methods)
        return PrivilegeTable(merged, self._privileges)

    def rule(self, method: str) -> MethodRule | None:
        """The rule for C{method} (case-insensitive), or C{None} if unknown."""
        return self._methods.get(method.lower())

    def operations(self, privilege: str) -> frozenset[str]:
        """The operations a privilege allows (C{{"*"}} for all)."""
        return self._privileges.get(privilege.lower(), frozenset())

    def grants(self, privileges: Iterable[str], operation: str) -> bool:
        """True if any of C{privileges} allows C{operation}."""
        wanted = operation.lower()
        for privilege in privileges:
            allowed = self.operations(privilege)
            if ALL_OPERATIONS in allowed or wanted in allowed:
                return True
        return False

    def allows(self, privileges: Iterable[str], name: str) -> bool:
        """
        True if C{privileges} cover C{name}.

        C{name} may be a privilege (held directly, or implied by C{*} or
        C{authority}), an operation (C{createsliver}) or a method
        (C{Allocate}) of the table.
        """
        held = {p.lower() for p in privileges}
        wanted = name.lower()
        if wanted in held:
            return True
        rule = self._methods.get(wanted)
        if rule is not None:
            return rule.operation is None or self.grants(held, rule.operation)
        return self.grants(held, wanted)


DEFAULT_TABLE = PrivilegeTable()
"""The table for the AM API v3 methods."""
