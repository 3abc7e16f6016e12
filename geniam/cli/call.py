# -*- test-case-name: tests.cli.test_call -*-
"""
C{geniam call}: call any AM API v3 method of an aggregate or slice manager,
or (C{--cm}) any method of an aggregate's ProtoGENI component manager API.

::

  geniam call URL METHOD [ARGUMENT ...] --certificate CERT --private-key KEY
      --trust-roots FILE_OR_DIR [--credential FILE ...] [--option NAME=VALUE ...]
      [--ssh-key FILE] [--json]
  geniam call --cm URL METHOD [NAME=VALUE ...] (the same flags)

Positional arguments after METHOD, by method:

  - GetVersion, ListResources: none
  - Describe, Status, Provision, Delete: one slice URN or sliver URNs
  - Allocate: SLICE_URN RSPEC_FILE (C{-} reads standard input)
  - Renew: URN ... TIME (RFC 3339 or C{now+2h})
  - PerformOperationalAction: ACTION URN ...
  - Shutdown: SLICE_URN
  - BeginTransaction, UpdateTransaction: SLICE_URN RSPEC_FILE (the whole
    desired state; C{--ssh-key} sends the caller as the C{users} argument)
  - CommitTransaction, AbortTransaction: SLICE_URN

C{--option NAME=VALUE} sets an option; VALUE is read as JSON when it parses
(C{true}, C{3}, C{{"type": "GENI", "version": "3"}}), else as a string;
identifiers (L{IDENTIFIER_OPTIONS}: C{geniam_transaction}, C{call_id}) are
always strings. C{--option geniam_transaction=ID} retries a Commit or an
Abort of the transaction ID; C{--option 'geniam_transactions={"URN":
"ID", ...}'} names each aggregate's own transaction through a slice manager.
ListResources, Describe and Provision get C{geni_rspec_version} GENI 3
unless it is given. C{--ssh-key FILE} adds C{geni_users} for the caller.
The exit status is 0 when the call succeeded (geni_code 0), 1 when the
server answered with an error, 2 for usage errors or when it could not be
reached.

With C{--cm} the call goes to the component manager API at
L{CM_PATH} of the aggregate at URL (unless URL already names a
C{/protogeni/xmlrpc/cm} path), with one struct of named arguments built
from the C{NAME=VALUE} arguments: VALUE is read as JSON when it parses,
C{NAME=@FILE} reads a file (C{@-} standard input), and C{expiration} takes
a time as C{Renew} does. C{--credential} files go as C{credentials} (plain
strings, as ProtoGENI clients send them) and C{--ssh-key FILE} as C{keys}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence
from urllib.parse import urlsplit, urlunsplit

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.python import usage

from geniam.cli.options import InterspersedOptions
from geniam.cli.rspec import parse_when
from geniam.client import GENI_V3, AMClient
from geniam.errors import GeniError
from geniam.managers.cm import CM_PATHS
from geniam.managers.cm import METHODS as CM_METHODS
from geniam.timeutil import format_time
from geniam.trust.gid import TrustRoots
from geniam.trust.identity import Identity

METHODS = (
    "GetVersion",
    "ListResources",
    "Describe",
    "Allocate",
    "Renew",
    "Provision",
    "Status",
    "PerformOperationalAction",
    "Delete",
    "Shutdown",
    "BeginTransaction",
    "UpdateTransaction",
    "CommitTransaction",
    "AbortTransaction",
)
WANTS_RSPEC_VERSION = ("ListResources", "Describe", "Provision")
IDENTIFIER_OPTIONS = ("geniam_transaction", "call_id")
"""Options whose value is taken as it is written, never as JSON (an identifier of digits stays a string)."""


CM_PATH = CM_PATHS[0]
"""Where an aggregate serves the component manager API."""


class Options(InterspersedOptions):
    """Flags of C{geniam call}; they may come before or after the arguments."""

    synopsis = "geniam call URL METHOD [ARGUMENT ...] [options]"
    optParameters = [
        ["certificate", None, None, "Your certificate (PEM, chain allowed)."],
        ["private-key", None, None, "Your private key (PEM)."],
        ["trust-roots", None, None, "Root certificates the server's certificate must chain to: a PEM file or a folder of them."],
        ["ssh-key", None, None, "An SSH public key file to send as geni_users for you."],
        ["timeout", None, 120.0, "Seconds to wait for the answer.", float],
    ]
    optFlags = [
        ["json", None, "Print the whole return struct as JSON."],
        ["cm", None, "Call the ProtoGENI component manager API (arguments NAME=VALUE)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["credential"] = []
        self["option"] = {}

    def opt_credential(self, path: str) -> None:
        """A credential file to send (repeatable)."""
        try:
            self["credential"].append(Path(path).read_text())
        except OSError as e:
            raise usage.UsageError(f"--credential {path}: {e.strerror}") from None

    def opt_option(self, pair: str) -> None:
        """An option NAME=VALUE (repeatable; VALUE as JSON when it parses)."""
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise usage.UsageError(f"--option wants NAME=VALUE, got {pair!r}")
        try:
            value: Any = raw if name in IDENTIFIER_OPTIONS else json.loads(raw)
        except ValueError:
            value = raw
        self["option"][name] = value

    def parseArgs(self, url: str, method: str, *arguments: str) -> None:  # type: ignore[override]
        """Take the URL, the method and its arguments."""
        self["url"], self["method"], self["arguments"] = url, method, list(arguments)

    def postOptions(self) -> None:
        """Check the method (of the API C{--cm} chooses) and that an identity and roots are given."""
        methods = CM_METHODS if self["cm"] else METHODS
        if self["method"] not in methods:
            raise usage.UsageError(f"unknown method {self['method']!r}; one of {', '.join(methods)}")
        for name in ("certificate", "private-key", "trust-roots"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")


def call_parameters(options: Options, caller_urn: str, now: float) -> list[Any]:
    """Build the XML-RPC parameters of the call from the command line."""
    method, args = options["method"], list(options["arguments"])
    opts = dict(options["option"])
    if method in WANTS_RSPEC_VERSION:
        opts.setdefault("geni_rspec_version", GENI_V3)
    if options["ssh-key"]:
        key = Path(options["ssh-key"]).read_text().strip()
        opts.setdefault("geni_users", [{"urn": caller_urn, "keys": [key]}])
    creds = [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": c} for c in options["credential"]]

    def need(count: int, what: str) -> None:
        if len(args) < count:
            raise usage.UsageError(f"{method} needs {what}")

    if method == "GetVersion":
        return [opts]
    if method == "ListResources":
        return [creds, opts]
    if method == "Allocate":
        need(2, "SLICE_URN RSPEC_FILE")
        rspec = sys.stdin.read() if args[1] == "-" else Path(args[1]).read_text()
        return [args[0], creds, rspec, opts]
    if method == "Renew":
        need(2, "URN ... TIME")
        return [args[:-1], creds, format_time(parse_when(args[-1], now)), opts]
    if method == "PerformOperationalAction":
        need(2, "ACTION URN ...")
        return [args[1:], creds, args[0], opts]
    if method in ("BeginTransaction", "UpdateTransaction"):
        need(2, "SLICE_URN RSPEC_FILE")
        rspec = sys.stdin.read() if args[1] == "-" else Path(args[1]).read_text()
        return [args[0], creds, rspec, opts.pop("geni_users", []), opts]
    if method in ("Shutdown", "CommitTransaction", "AbortTransaction"):
        need(1, "SLICE_URN")
        return [args[0], creds, opts]
    need(1, "a slice URN or sliver URNs")
    return [args, creds, opts]


def cm_url(url: str) -> str:
    """The component manager API's URL at the aggregate at C{url} (C{url} itself if it names a CM path)."""
    parts = urlsplit(url)
    if parts.path.rstrip("/").startswith("/protogeni/xmlrpc/cm"):
        return url
    return urlunsplit((parts.scheme, parts.netloc, CM_PATH, "", ""))


def cm_arguments(options: Options, now: float) -> dict[str, Any]:
    """The one struct of named arguments of a component manager call, from the command line."""
    args: dict[str, Any] = {}
    for pair in options["arguments"]:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise usage.UsageError(f"{options['method']} takes NAME=VALUE arguments, got {pair!r}")
        if raw.startswith("@"):
            value: Any = sys.stdin.read() if raw == "@-" else Path(raw[1:]).read_text()
        elif name == "expiration":
            value = format_time(parse_when(raw, now))
        else:
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        args[name] = value
    if options["credential"]:
        args.setdefault("credentials", list(options["credential"]))
    if options["ssh-key"]:
        args.setdefault("keys", [{"type": "ssh", "key": Path(options["ssh-key"]).read_text().strip()}])
    return args


def answer_code(struct: Any) -> int | None:
    """The GENI code of an answer: C{code.geni_code} (AM API) or C{code} (component manager API)."""
    code = struct.get("code") if isinstance(struct, dict) else None
    if isinstance(code, dict):
        code = code.get("geni_code")
    return code if isinstance(code, int) else None


def render(struct: Any) -> str:
    """A readable rendering of a GENI return struct (of the AM or the component manager API)."""
    if not isinstance(struct, dict) or "code" not in struct:
        return json.dumps(struct, indent=2, default=str)
    lines = [f"geni_code: {answer_code(struct)}" + (f"  ({struct.get('output')})" if struct.get("output") else "")]
    lines.append(_render_value(struct.get("value"), ""))
    return "\n".join(line for line in lines if line)


def _render_value(value: Any, indent: str) -> str:
    if isinstance(value, str) and value.lstrip().startswith("<"):
        return value
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) or (isinstance(item, str) and item.lstrip().startswith("<")):
                parts.append(f"{indent}{key}:")
                parts.append(_render_value(item, indent + "  "))
            else:
                parts.append(f"{indent}{key}: {item}")
        return "\n".join(parts)
    if isinstance(value, list):
        parts = []
        for item in value:
            text = _render_value(item, indent + "  ")
            parts.append(f"{indent}- " + text.lstrip() if text else f"{indent}-")
        return "\n".join(parts)
    return f"{indent}{value}"


async def call_and_print(reactor: Any, options: Any, url: str, method: str, params: Sequence[Any], command: str = "call") -> int:
    """
    Call C{method} at C{url} with the identity and roots the options name
    (C{certificate}, C{private-key}, C{trust-roots}, C{timeout}, C{json});
    print the answer; return 0 on success, 1 on a GENI error, 2 when the call failed.
    """
    identity = Identity.from_files(options["certificate"], options["private-key"])
    roots = TrustRoots.from_path(options["trust-roots"])
    client = AMClient(reactor, url, identity, roots, timeout=options["timeout"])
    try:
        struct = await client.call(method, *params)
    except GeniError as e:
        print(f"geniam {command}: {e.output}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    print(json.dumps(struct, indent=2, default=str) if options["json"] else render(struct))
    return 0 if answer_code(struct) == 0 else 1


async def run(reactor: Any, options: Options) -> int:
    """Make the call and print its result; return the exit status."""
    if options["cm"]:
        arguments = cm_arguments(options, time.time())
        return await call_and_print(reactor, options, cm_url(options["url"]), options["method"], [arguments])
    caller = Identity.from_files(options["certificate"], options["private-key"]).urn or ""
    params = call_parameters(options, caller, time.time())
    return await call_and_print(reactor, options, options["url"], options["method"], params)


def command_main(command: str, options: Any, argv: Sequence[str], run: Callable[[Any, Any], Awaitable[int]]) -> int:
    """
    Parse C{argv} into C{options} and C{run(reactor, options)} under a
    reactor of its own; return its exit status (2 on usage errors).
    """
    try:
        options.parseOptions(list(argv))
    except (usage.UsageError, GeniError) as e:
        print(f"geniam {command}: {getattr(e, 'output', e)}\n\n{options}", file=sys.stderr)
        return 2
    except SystemExit as e:  # --help, --version
        return int(e.code or 0)
    status: list[int] = []

    async def go(reactor: Any) -> None:
        try:
            status.append(await run(reactor, options))
        except (usage.UsageError, GeniError, OSError) as e:
            print(f"geniam {command}: {getattr(e, 'output', e)}", file=sys.stderr)
            status.append(2)

    try:
        react(lambda reactor: Deferred.fromCoroutine(go(reactor)))
    except SystemExit:
        pass
    return status[0] if status else 2


def main(argv: Sequence[str]) -> int:
    """Entry point of C{geniam call}."""
    return command_main("call", Options(), argv, run)
