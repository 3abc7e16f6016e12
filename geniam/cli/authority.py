# -*- test-case-name: tests.cli.test_authority -*-
"""
C{geniam authority}: a development trust domain in a folder.

    geniam authority init DIR [--authority NAME]
    geniam authority user DIR NAME [--email ADDRESS]
    geniam authority slice DIR SLICE --owner USER [--lifetime 30d]
    geniam authority delegate DIR --credential FILE --from USER --to USER_OR_CERT
        [--privilege NAME ...] [--out FILE]
    geniam authority speaks-for DIR --user USER --tool CERT

C{init} creates the slice authority (the domain's only trust root, in
C{DIR/roots}); C{user} issues a user certificate and key and writes the
user's credential to C{DIR/credentials}; C{slice} issues the slice's
certificate and the owner's slice credential into C{DIR/slices};
C{delegate} passes a credential on to another user (or any certificate);
C{speaks-for} writes the user's consent for a tool to act for them.
Files are never overwritten. Exit status: 0 done, 1 refused (a name that
exists, a missing user, a rule broken), 2 usage error.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any, TextIO

from twisted.python import usage

from geniam.cli.options import InterspersedOptions, run_command
from geniam.errors import GeniCode, GeniError
from geniam.options import GeniamOptions
from geniam.timeutil import format_time
from geniam.trust.domain import DEFAULT_AUTHORITY, TrustDomain
from geniam.trust.gid import GID
from geniam.trust.identity import Identity
from geniam.trust.mint import delegate_credential, make_slice, slice_credential, user_credential
from geniam.trust.speaksfor import issue_speaks_for
from geniam.urn import parse_urn

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2

DEFAULT_SLICE_LIFETIME = 30 * 86400
"""How long a slice credential lasts unless told otherwise."""

DEFAULT_SPEAKS_FOR_LIFETIME = 30 * 86400
"""How long a speaks-for credential lasts unless told otherwise."""

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LIFETIME = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")


def parse_lifetime(text: str) -> float:
    """
    Parse a lifetime: seconds, or a number with C{s}, C{m}, C{h}, C{d} or C{w}.

    @raise usage.UsageError: if C{text} is not one.
    """
    match = _LIFETIME.match(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise usage.UsageError(f"not a lifetime: {text!r} (use e.g. 3600, 90m, 12h, 30d, 2w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


class _DomainCommand(InterspersedOptions):
    """A subcommand whose first argument is the domain folder."""

    optFlags = [["sha1", None, "Sign with RSA-SHA1, as the GENI reference tools do (default RSA-SHA256)."]]

    def parseArgs(self, directory: str) -> None:  # type: ignore[override]  # noqa: N802
        """Take the domain folder."""
        self["directory"] = directory

    @property
    def algorithm(self) -> str:
        """The signature algorithm asked for."""
        return "sha1" if self["sha1"] else "sha256"


class InitOptions(InterspersedOptions):
    """C{geniam authority init DIR [--authority NAME]}."""

    synopsis = "DIR [--authority NAME]"
    longdesc = "Create a trust domain in DIR: a new slice authority, the domain's only trust root (DIR/roots)."
    optParameters = [["authority", None, DEFAULT_AUTHORITY, "The authority string (e.g. geni:example)."]]

    def parseArgs(self, directory: str) -> None:  # type: ignore[override]  # noqa: N802
        """Take the domain folder."""
        self["directory"] = directory


class UserOptions(_DomainCommand):
    """C{geniam authority user DIR NAME [--email ADDRESS]}."""

    synopsis = "DIR NAME [--email ADDRESS] [--sha1]"
    longdesc = "Issue user NAME's certificate and key, and write the user credential to DIR/credentials."
    optParameters = [["email", None, None, "The user's e-mail address (put in the certificate)."]]

    def parseArgs(self, directory: str, name: str) -> None:  # type: ignore[override]  # noqa: N802
        """Take the domain folder and the user name."""
        self["directory"] = directory
        self["name"] = name


class SliceOptions(_DomainCommand):
    """C{geniam authority slice DIR SLICE --owner USER [--lifetime 30d]}."""

    synopsis = "DIR SLICE --owner USER [--lifetime 30d] [--out FILE] [--sha1]"
    longdesc = "Issue the slice's certificate (once) and a slice credential for its owner, in DIR/slices."
    optParameters = [
        ["owner", None, None, "The user who owns the slice credential."],
        ["lifetime", None, DEFAULT_SLICE_LIFETIME, "How long the credential lasts (3600, 12h, 30d, ...).", parse_lifetime],
        ["out", None, None, "Where to write the credential (default DIR/slices/SLICE-OWNER-cred.xml)."],
    ]

    def parseArgs(self, directory: str, name: str) -> None:  # type: ignore[override]  # noqa: N802
        """Take the domain folder and the slice name."""
        self["directory"] = directory
        self["name"] = name

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require the owner."""
        if not self["owner"]:
            raise usage.UsageError("--owner is required")


class DelegateOptions(_DomainCommand):
    """C{geniam authority delegate DIR --credential FILE --from USER --to USER_OR_CERT}."""

    synopsis = "DIR --credential FILE --from USER --to USER_OR_CERT [--privilege NAME ...] [--delegatable] [--out FILE]"
    longdesc = (
        "Delegate a credential owned by USER to another user of the domain or to the holder of a "
        "certificate file: every delegatable privilege, or the --privilege names given."
    )
    optParameters = [
        ["credential", None, None, "The credential to delegate (its owner must be --from)."],
        ["from", None, None, "The user delegating: the credential's owner."],
        ["to", None, None, "The user (a name in the domain) or certificate file receiving it."],
        ["out", None, None, "Where to write the delegated credential (default in DIR/credentials)."],
    ]
    optFlags = [
        *_DomainCommand.optFlags,
        ["delegatable", None, "Let the receiver delegate the privileges further."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["privileges"] = []

    def opt_privilege(self, name: str) -> None:
        """A privilege to pass on (repeatable; default: every delegatable one)."""
        if not name.strip():
            raise usage.UsageError("--privilege needs a name")
        self["privileges"].append(name.strip())

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require the credential, the delegator and the receiver."""
        for name in ("credential", "from", "to"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


class SpeaksForOptions(_DomainCommand):
    """C{geniam authority speaks-for DIR --user USER --tool CERT}."""

    synopsis = "DIR --user USER --tool CERT [--lifetime 30d] [--out FILE] [--sha1]"
    longdesc = "Write USER's speaks-for credential letting the tool with certificate CERT act for them."
    optParameters = [
        ["user", None, None, "The user who lets the tool act for them."],
        ["tool", None, None, "The tool's certificate file (or the name of a tool in the domain)."],
        ["lifetime", None, DEFAULT_SPEAKS_FOR_LIFETIME, "How long the credential lasts.", parse_lifetime],
        ["out", None, None, "Where to write it (default DIR/credentials/USER-speaksfor-TOOL.xml)."],
    ]

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require the user and the tool."""
        for name in ("user", "tool"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


class Options(GeniamOptions):
    """Options of C{geniam authority}."""

    synopsis = "geniam authority"
    longdesc = "Make a development trust domain in a folder: authority, users, slices, delegations, speaks-for."
    subCommands = [
        ["init", None, InitOptions, "Create a trust domain: a slice authority, the only root."],
        ["user", None, UserOptions, "Issue a user certificate, key and user credential."],
        ["slice", None, SliceOptions, "Issue a slice certificate and its owner's slice credential."],
        ["delegate", None, DelegateOptions, "Delegate a credential to another user or certificate."],
        ["speaks-for", None, SpeaksForOptions, "Let a tool speak for a user."],
    ]

    def postOptions(self) -> None:  # noqa: N802 (usage.Options API)
        """Require a subcommand."""
        if self.subCommand is None:
            raise usage.UsageError("a subcommand is required (init, user, slice, delegate, speaks-for)")


def _write(path: Path, text: str) -> Path:
    """Write a new file; never overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise GeniError(GeniCode.ALREADYEXISTS, f"{path} already exists; not overwriting it") from None
    except OSError as e:
        raise GeniError(GeniCode.ERROR, f"cannot write {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _open(options: usage.Options) -> TrustDomain:
    return TrustDomain.open(options["directory"])


def _read_gid(path: str) -> GID:
    try:
        with open(path, "rb") as f:
            return GID.from_pem(f.read(256 * 1024))
    except OSError as e:
        raise GeniError(GeniCode.ERROR, f"cannot read {path}: {e.strerror or e}") from None


def _short_name(gid: GID) -> str:
    parsed = gid.parsed_urn
    return parsed.name if parsed is not None else gid.fingerprint.hex()[:12]


def init(options: InitOptions, now: float, out: TextIO) -> int:
    """Create a domain."""
    domain = TrustDomain.create(options["directory"], options["authority"], now=now)
    print(f"created trust domain {domain.authority} in {domain.path}", file=out)
    print(f"slice authority: {domain.ca_urn}", file=out)
    print(f"trust roots: {domain.roots_dir}", file=out)
    return EXIT_OK


def user(options: UserOptions, now: float, out: TextIO) -> int:
    """Issue a user and their user credential."""
    domain = _open(options)
    identity = domain.add_user(options["name"], options["email"], now=now)
    credential = user_credential(domain.ca, identity.gid, identity.gid.not_after, algorithm=options.algorithm)
    path = _write(domain.credentials_dir / f"{options['name']}-usercred.xml", credential)
    print(f"user {identity.urn}", file=out)
    print(f"certificate: {domain.cert_path('users', options['name'])}", file=out)
    print(f"key: {domain.key_path('users', options['name'])}", file=out)
    print(f"user credential: {path} (expires {format_time(identity.gid.not_after)})", file=out)
    return EXIT_OK


def create_slice(options: SliceOptions, now: float, out: TextIO) -> int:
    """Issue a slice certificate (if new) and a slice credential for its owner."""
    domain = _open(options)
    owner = domain.user(options["owner"])
    urn = f"urn:publicid:IDN+{domain.authority}+slice+{options['name']}"
    parse_urn(urn, expected_type="slice")
    expires = now + options["lifetime"]
    slice_path = domain.slices_dir / f"{options['name']}-cert.pem"
    if slice_path.exists():
        slice_gid = _read_gid(str(slice_path))
    else:
        slice_gid = make_slice(domain.ca, urn, now, max(expires, now + DEFAULT_SLICE_LIFETIME)).gid
        domain.slices_dir.mkdir(exist_ok=True)
        _write(slice_path, slice_gid.to_pem().decode("ascii"))
    capped = min(expires, slice_gid.not_after, owner.gid.not_after)
    if capped < expires:
        print(f"note: expiry capped at {format_time(capped)} by the slice or owner certificate", file=out)
    credential = slice_credential(domain.ca, owner.gid, slice_gid, capped, algorithm=options.algorithm)
    target = Path(options["out"]) if options["out"] else domain.slices_dir / f"{options['name']}-{options['owner']}-cred.xml"
    _write(target, credential)
    print(f"slice {urn}", file=out)
    print(f"slice certificate: {slice_path}", file=out)
    print(f"slice credential for {owner.urn}: {target} (expires {format_time(capped)})", file=out)
    return EXIT_OK


def delegate(options: DelegateOptions, now: float, out: TextIO) -> int:
    """Delegate a credential."""
    domain = _open(options)
    giver: Identity = domain.user(options["from"])
    receiver = _read_gid(options["to"]) if os.path.isfile(options["to"]) else domain.user(options["to"]).gid
    try:
        with open(options["credential"], "rb") as f:
            parent = f.read()
    except OSError as e:
        raise usage.UsageError(f"cannot read {options['credential']}: {e.strerror or e}") from None
    privileges = [(name, bool(options["delegatable"])) for name in options["privileges"]] or None
    if privileges is None and options["delegatable"]:
        raise usage.UsageError("--delegatable needs the --privilege names to pass on")
    credential = delegate_credential(parent, giver, receiver, privileges, algorithm=options.algorithm)
    name = _short_name(receiver)
    stem = Path(options["credential"]).stem
    target = Path(options["out"]) if options["out"] else domain.credentials_dir / f"{stem}-to-{name}.xml"
    _write(target, credential)
    print(f"{giver.urn} delegated {stem} to {receiver.urn or receiver.subject}: {target}", file=out)
    return EXIT_OK


def speaks_for(options: SpeaksForOptions, now: float, out: TextIO) -> int:
    """Let a tool speak for a user."""
    domain = _open(options)
    person = domain.user(options["user"])
    tool = _read_gid(options["tool"]) if os.path.isfile(options["tool"]) else domain.tool(options["tool"]).gid
    expires = min(now + options["lifetime"], person.gid.not_after)
    credential = issue_speaks_for(person, tool, expires, algorithm=options.algorithm)
    name = _short_name(tool)
    target = Path(options["out"]) if options["out"] else domain.credentials_dir / f"{options['user']}-speaksfor-{name}.xml"
    _write(target, credential)
    print(f"{person.urn} lets {tool.urn or tool.subject} speak for them until {format_time(expires)}: {target}", file=out)
    return EXIT_OK


_COMMANDS: dict[str, Callable[[Any, float, TextIO], int]] = {"init": init, "user": user, "slice": create_slice, "delegate": delegate, "speaks-for": speaks_for}


def main(argv: list[str], now: float | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """
    Run C{geniam authority}.

    @param now: the current time, POSIX seconds (the system clock if C{None}).
    @return: 0 done, 1 refused, 2 usage error.
    """
    out = out if out is not None else sys.stdout
    options = Options()

    def command(now: float) -> int:
        return _COMMANDS[str(options.subCommand)](options.subOptions, now, out)

    return run_command("geniam authority", options, argv, now, command, err, EXIT_REFUSED)
