# -*- test-case-name: tests.cli.test_admin -*-
"""
C{geniam admin}: operate a running aggregate manager over its own TLS
port, through its operators' API at C{/admin} (see
L{geniam.managers.operators}); the certificate given must be an operator's.

    geniam admin URL bookings [--from TIME] [--to TIME]
    geniam admin URL cancel SLIVER_URN --reason TEXT
    geniam admin URL maintenance START END --reason TEXT [--cancel-overlapping]
    geniam admin URL reopen WINDOW_ID
    geniam admin URL policy [NAME=DURATION ...]
    geniam admin URL audit [--from TIME]

TIME is RFC 3339, C{now} or C{now+2h}; a policy DURATION is C{90m},
C{2h}, C{7d} or 0 (off). Exit status 0 on success, 1 when the AM
refused, 2 on usage or connection errors.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from twisted.python import usage

from geniam.cli.call import call_and_print, command_main
from geniam.cli.options import InterspersedOptions
from geniam.cli.rspec import parse_when
from geniam.config import duration_or_off
from geniam.managers.operators import ADMIN_PATH
from geniam.timeutil import format_time

ACTIONS = ("bookings", "cancel", "maintenance", "reopen", "policy", "audit")
"""The actions of C{geniam admin}."""


class Options(InterspersedOptions):
    """Flags of C{geniam admin}."""

    synopsis = "URL ACTION [ARGUMENTS] --certificate FILE --private-key FILE --trust-roots PATH"
    optParameters = [
        ["certificate", None, None, "Your operator certificate (PEM, chain allowed)."],
        ["private-key", None, None, "Your private key (PEM)."],
        ["trust-roots", None, None, "Root certificates the AM's certificate must chain to: a PEM file or a folder of them."],
        ["from", None, None, "bookings, audit: from this TIME (default: now; audit: the beginning)."],
        ["to", None, None, "bookings: up to this TIME (default: 30 days after --from)."],
        ["reason", None, None, "cancel, maintenance: the reason, shown to the booking's owner or to everyone."],
        ["timeout", None, 60.0, "Seconds to wait for the answer.", float],
    ]
    optFlags = [
        ["cancel-overlapping", None, "maintenance: also cancel the bookings the window overlaps (default: only list them)."],
        ["json", None, "Print the whole return struct as JSON."],
    ]

    def parseArgs(self, url: str, action: str, *arguments: str) -> None:  # type: ignore[override]
        """Take the AM's URL, the action and its arguments."""
        if action not in ACTIONS:
            raise usage.UsageError(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        self["url"], self["action"], self["arguments"] = url, action, list(arguments)

    def postOptions(self) -> None:
        """Check that an identity and roots are given."""
        for name in ("certificate", "private-key", "trust-roots"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


def admin_url(url: str) -> str:
    """The operators' API URL of the AM at C{url} (its AM API URL, or the C{/admin} URL itself)."""
    base = url.rstrip("/")
    for suffix in (ADMIN_PATH, "/am/3.0"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base + ADMIN_PATH


def admin_call(options: Options, now: float) -> tuple[str, list[Any]]:
    """The operators' method and parameters the command line asks for."""
    action, args = options["action"], list(options["arguments"])

    def exactly(count: int, what: str) -> None:
        if len(args) != count:
            raise usage.UsageError(f"{action} needs {what}")

    def reason() -> str:
        if not options["reason"]:
            raise usage.UsageError(f"{action} needs --reason")
        return str(options["reason"])

    if action == "bookings":
        exactly(0, "no arguments")
        listing: dict[str, Any] = {}
        if options["from"]:
            listing["start"] = format_time(parse_when(options["from"], now))
        if options["to"]:
            listing["end"] = format_time(parse_when(options["to"], now))
        return "ListBookings", [listing]
    if action == "cancel":
        exactly(1, "SLIVER_URN")
        return "CancelBooking", [args[0], reason()]
    if action == "maintenance":
        exactly(2, "START END")
        start, end = (format_time(parse_when(a, now)) for a in args)
        return "AddMaintenance", [start, end, reason(), {"cancel_overlapping": bool(options["cancel-overlapping"])}]
    if action == "reopen":
        exactly(1, "WINDOW_ID")
        return "RemoveMaintenance", [args[0]]
    if action == "policy":
        if not args:
            return "GetPolicy", []
        settings: dict[str, float] = {}
        for pair in args:
            name, sep, value = pair.partition("=")
            if not sep:
                raise usage.UsageError(f"policy wants NAME=DURATION, got {pair!r}")
            try:
                settings[name.replace("-", "_")] = duration_or_off(value)
            except ValueError:
                raise usage.UsageError(f"{name}: {value!r} is not a duration") from None
        return "SetPolicy", [settings]
    exactly(0, "no arguments")
    return "ListAudit", [{"since": format_time(parse_when(options["from"], now))} if options["from"] else {}]


async def run(reactor: Any, options: Options) -> int:
    """Make the call and print its result; return the exit status."""
    method, params = admin_call(options, time.time())
    return await call_and_print(reactor, options, admin_url(options["url"]), method, params, "admin")


def main(argv: Sequence[str]) -> int:
    """Entry point of C{geniam admin}."""
    return command_main("admin", Options(), argv, run)
