"""
Tests for L{geniam.protocols.signatures}: the AM API v3 argument checks.
"""

from __future__ import annotations

import xmlrpc.client
from datetime import datetime
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.protocols.signatures import (
    API_V3_SIGNATURES,
    Param,
    Signature,
    boolean,
    integer,
    string,
    struct,
)

CRED = {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": "<signed-credential/>"}

VALID_ARGS: dict[str, list[Any]] = {
    "GetVersion": [{}],
    "ListResources": [[CRED], {"geni_rspec_version": {"type": "GENI", "version": "3"}}],
    "Describe": [["urn:publicid:IDN+x+slice+s"], [CRED], {}],
    "Allocate": ["urn:publicid:IDN+x+slice+s", [CRED], "<rspec/>", {}],
    "Renew": [["urn:publicid:IDN+x+slice+s"], [CRED], "2026-11-22T12:00:00Z", {}],
    "Provision": [["urn:publicid:IDN+x+slice+s"], [CRED], {}],
    "Status": [["urn:publicid:IDN+x+slice+s"], [CRED], {}],
    "PerformOperationalAction": [["urn:publicid:IDN+x+slice+s"], [CRED], "geni_start", {}],
    "Delete": [["urn:publicid:IDN+x+slice+s"], [CRED], {}],
    "Shutdown": ["urn:publicid:IDN+x+slice+s", [CRED], {}],
}
"""A valid argument list for each of the ten methods."""

WRONG_VALUE: dict[str, Any] = {
    "urns": "urn:publicid:IDN+x+slice+s",
    "credentials": {"geni_type": "geni_sfa"},
    "options": [],
    "slice_urn": ["urn:publicid:IDN+x+slice+s"],
    "rspec": 42,
    "expiration_time": 1700000000,
    "action": ["geni_start"],
}
"""A value of the wrong XML-RPC type for each parameter name."""


def bad_cases() -> list[tuple[str, int, Any]]:
    """Every (method, position, wrong value) combination for the ten methods."""
    cases = []
    for method, signature in API_V3_SIGNATURES.items():
        for index, param in enumerate(signature.params):
            cases.append((method, index, WRONG_VALUE[param.name]))
    return cases


class ApiV3SignatureTests(SynchronousTestCase):
    """The AM API v3 table checks the number and types of arguments."""

    def test_all_ten_methods(self) -> None:
        """The table covers exactly the ten AM API v3 methods."""
        self.assertEqual(set(API_V3_SIGNATURES), set(VALID_ARGS))

    def test_valid_arguments_pass(self) -> None:
        """Valid arguments bind unchanged."""
        for method, args in VALID_ARGS.items():
            self.assertEqual(API_V3_SIGNATURES[method].bind(method, args), args, method)

    def test_get_version_options_optional(self) -> None:
        """GetVersion without options binds an empty struct."""
        self.assertEqual(API_V3_SIGNATURES["GetVersion"].bind("GetVersion", []), [{}])

    def test_wrong_types_are_badargs(self) -> None:
        """A wrong type in any position of any method is BADARGS naming the parameter."""
        cases = bad_cases()
        self.assertEqual(len(cases), 30)
        for method, index, wrong in cases:
            args = list(VALID_ARGS[method])
            args[index] = wrong
            signature = API_V3_SIGNATURES[method]
            error = self.assertRaises(GeniError, signature.bind, method, args)
            self.assertEqual(error.code, GeniCode.BADARGS, (method, index))
            self.assertIn(repr(signature.params[index].name), error.output)

    def test_missing_arguments(self) -> None:
        """Each method other than GetVersion with an argument short is MISSINGARGS."""
        for method, args in VALID_ARGS.items():
            if method == "GetVersion":
                continue
            error = self.assertRaises(GeniError, API_V3_SIGNATURES[method].bind, method, args[:-1])
            self.assertEqual(error.code, GeniCode.MISSINGARGS, method)
            self.assertIn("options", error.output)

    def test_too_many_arguments(self) -> None:
        """An extra argument is BADARGS."""
        for method, args in VALID_ARGS.items():
            error = self.assertRaises(GeniError, API_V3_SIGNATURES[method].bind, method, args + [{}])
            self.assertEqual(error.code, GeniCode.BADARGS, method)

    def test_urn_elements_must_be_strings(self) -> None:
        """An array of URNs with a non-string element is BADARGS naming the element."""
        error = self.assertRaises(
            GeniError, API_V3_SIGNATURES["Status"].bind, "Status", [["urn:a", 3], [], {}]
        )
        self.assertEqual(error.code, GeniCode.BADARGS)
        self.assertIn("urns[1]", error.output)

    def test_credentials_structs_or_strings(self) -> None:
        """Credentials may mix structs and bare strings, but nothing else."""
        bind = API_V3_SIGNATURES["ListResources"].bind
        self.assertEqual(bind("ListResources", [[CRED, "<signed-credential/>"], {}])[0], [CRED, "<signed-credential/>"])
        error = self.assertRaises(GeniError, bind, "ListResources", [[CRED, 7], {}])
        self.assertEqual(error.code, GeniCode.BADARGS)
        self.assertIn("credentials[1]", error.output)

    def test_renew_accepts_datetime(self) -> None:
        """Renew's expiration_time as dateTime.iso8601 becomes an RFC 3339 string."""
        bind = API_V3_SIGNATURES["Renew"].bind
        for value in (datetime(2026, 11, 22, 12, 0), xmlrpc.client.DateTime("20261122T12:00:00")):
            self.assertEqual(bind("Renew", [["urn:a"], [], value, {}])[2], "2026-11-22T12:00:00Z")


class SignatureTests(SynchronousTestCase):
    """L{Signature} and the generic checkers serve other method sets too."""

    def test_target(self) -> None:
        """A signature may name a different API attribute."""
        self.assertEqual(Signature((), target="get_ticket").target, "get_ticket")

    def test_required_after_optional_refused(self) -> None:
        """A required parameter after an optional one is a definition error."""
        self.assertRaises(ValueError, Signature, (Param("a", string, default=str), Param("b", string)))

    def test_presented(self) -> None:
        """The credentials are split from the other bound values, which keep their order; none for GetVersion."""
        allocate = API_V3_SIGNATURES["Allocate"]
        bound = allocate.bind("Allocate", ["urn:publicid:IDN+x+slice+s", [CRED], "<rspec/>", {}])
        self.assertEqual(allocate.presented(bound), ([CRED], ["urn:publicid:IDN+x+slice+s", "<rspec/>", {}]))
        self.assertEqual(API_V3_SIGNATURES["GetVersion"].presented([{}]), ([], [{}]))

    def test_usage(self) -> None:
        """The usage text marks optional parameters."""
        self.assertEqual(API_V3_SIGNATURES["GetVersion"].usage("GetVersion"), "GetVersion([options])")

    def test_generic_checkers(self) -> None:
        """C{boolean} takes 0/1 leniently; C{integer} refuses booleans; C{struct} refuses arrays."""
        self.assertIs(boolean("b", 1), True)
        self.assertIs(boolean("b", False), False)
        self.assertRaises(GeniError, boolean, "b", 2)
        self.assertEqual(integer("i", 5), 5)
        self.assertRaises(GeniError, integer, "i", True)
        self.assertRaises(GeniError, struct, "s", [])

    def test_merging_method_sets(self) -> None:
        """Method sets merge into a new mapping, leaving the AM API table unchanged."""
        merged = {**API_V3_SIGNATURES, "GetTicket": Signature((Param("slice_urn", string),))}
        self.assertIn("GetTicket", merged)
        self.assertIn("Allocate", merged)
        self.assertNotIn("GetTicket", API_V3_SIGNATURES)
