# -*- test-case-name: tests.cli.test_credential -*-
"""
C{geniam credential verify}: explain whether a credential is valid for a caller.

    geniam credential verify --trust-roots FILE_OR_DIR --caller CERT.pem
        [--target URN] [--privilege NAME] [--at RFC3339-TIME] CREDENTIAL.xml

Every check is printed with PASS or FAIL and the reason: each level's
signature, signer chain and expiry, the owner and target certificates,
delegation, the issuing authority, owner = caller, and the target and
privilege when asked for. The exit status is 0 when the credential is
valid for that caller (and target and privilege), 1 when it is not, 2 for
a usage error. Scripts rely on these flags and statuses.
"""

from __future__ import annotations

import sys
from typing import TextIO

from twisted.internet.task import Clock
from twisted.python import usage

from geniam.cli.options import InterspersedOptions, run_command
from geniam.errors import GeniError
from geniam.options import GeniamOptions
from geniam.timeutil import format_time, parse_time
from geniam.trust.credential import MAX_CREDENTIAL_BYTES
from geniam.trust.gid import GID, TrustRoots
from geniam.trust.verifier import CredentialVerifier

EXIT_VALID = 0
"""The credential is valid for the caller (and target and privilege)."""

EXIT_INVALID = 1
"""The credential is not valid for the caller."""

EXIT_USAGE = 2
"""The command line or an input file is unusable."""


def _time(text: str) -> float:
    try:
        return parse_time(text)
    except GeniError as e:
        raise usage.UsageError(f"--at: {e.output}") from None


class VerifyOptions(InterspersedOptions):
    """Options of C{geniam credential verify}."""

    synopsis = "--trust-roots FILE_OR_DIR --caller CERT.pem [--target URN] [--privilege NAME] [--at RFC3339-TIME] CREDENTIAL.xml"
    longdesc = (
        "Explain every check made on CREDENTIAL.xml for the caller: each level's signature, signer, "
        "expiry, owner and target certificates, delegation, the issuing authority, owner = caller, "
        "and the target and privilege when given. Exit 0 if valid, 1 if not, 2 on usage errors."
    )
    optParameters = [
        ["trust-roots", None, None, "Trusted root certificates: a PEM file or a folder of them."],
        ["caller", None, None, "The caller's certificate (PEM; a chain may follow it)."],
        ["target", None, None, "The URN the credential must be about (a slice, or the user)."],
        [
            "privilege",
            None,
            None,
            "A privilege (control), SFA operation (createsliver) or AM method (Allocate) it must allow.",
        ],
        ["at", None, None, "Verify at this RFC 3339 time instead of now.", _time],
    ]

    def parseArgs(self, credential: str) -> None:  # type: ignore[override]  # noqa: N802
        """Take the credential file name."""
        self["credential"] = credential

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require the trust roots and the caller."""
        for name in ("trust-roots", "caller"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


class Options(GeniamOptions):
    """Options of C{geniam credential}."""

    synopsis = "geniam credential"
    longdesc = "Inspect GENI credentials."
    subCommands = [["verify", None, VerifyOptions, "Explain whether a credential is valid for a caller."]]

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require a subcommand."""
        if self.subCommand is None:
            raise usage.UsageError("a subcommand is required (verify)")


def _read(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise usage.UsageError(f"cannot read {path}: {e.strerror or e}") from None
    return data


def verify(options: VerifyOptions, now: float, out: TextIO) -> int:
    """Run C{verify} with parsed options; print the report and return the exit status."""
    try:
        roots = TrustRoots.from_path(options["trust-roots"])
        caller = GID.from_pem(_read(options["caller"], 256 * 1024))
    except GeniError as e:
        raise usage.UsageError(e.output) from None
    document = _read(options["credential"], MAX_CREDENTIAL_BYTES)
    at = options["at"] if options["at"] is not None else now
    clock = Clock()
    clock.advance(at)
    verifier = CredentialVerifier(roots, clock, cache_size=0)
    report = verifier.verify_credential(
        document, at, caller=caller, target_urn=options["target"], privilege=options["privilege"]
    )
    print(f"credential: {options['credential']}", file=out)
    print(f"caller: {caller.urn or caller.subject}", file=out)
    print(f"at: {format_time(at)}", file=out)
    print(report.format(), file=out)
    if report.ok:
        print("VALID: the credential is valid for this caller", file=out)
        return EXIT_VALID
    first = report.failures[0]
    print(f"INVALID: {first.name}: {first.reason}", file=out)
    return EXIT_INVALID


def main(argv: list[str], now: float | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """
    Run C{geniam credential}.

    @param now: the current time, POSIX seconds (the system clock if C{None}).
    @return: 0 valid, 1 invalid, 2 usage error.
    """
    out = out if out is not None else sys.stdout
    options = Options()
    return run_command(
        "geniam credential", options, argv, now, lambda now: verify(options.subOptions, now, out), err
    )
