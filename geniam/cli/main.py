# -*- test-case-name: tests.test_foundation -*-
"""
The C{geniam} command: a dispatcher to one module per subcommand.

Each subcommand module exposes C{main(argv: list[str]) -> int}; it is
imported only when asked for, so C{geniam --help} stays fast.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "authority": ("geniam.cli.authority", "make a development trust domain (init, user, slice, delegate, speaks-for)"),
    "credential": ("geniam.cli.credential", "explain whether a credential is valid for a caller"),
    "rspec": ("geniam.cli.rspec", "write request RSpecs for a time slot"),
    "call": ("geniam.cli.call", "call any AM API v3 method of an aggregate or slice manager"),
    "agent": ("geniam.cli.agent", "inspect a gateway agent"),
    "schedule": ("geniam.cli.schedule", "print the booking schedule of aggregates or a federation as a timeline"),
    "free": ("geniam.cli.free", "find the earliest slots when islands are all free together"),
    "admin": ("geniam.cli.admin", "operate a running aggregate manager: bookings, cancel, maintenance, policy, audit"),
    "demo": ("geniam.cli.demo", "run a whole federation on loopback and an experiment through it"),
}


def usage() -> str:
    """Return the top-level help text."""
    lines = ["Usage: geniam COMMAND [options]", "", "Commands:"]
    lines += [f"  {name:<11} {summary}" for name, (_, summary) in SUBCOMMANDS.items()]
    lines += ["", "Run 'geniam COMMAND --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the subcommand named by C{argv[0]} and return its exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in ("--version", "version"):
        from geniam import __version__

        print(f"geniam {__version__}")
        return 0
    if name not in SUBCOMMANDS:
        print(f"geniam: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    try:
        return int(module.main(rest) or 0)
    except SystemExit as e:  # --help and --version exit while the options are parsed
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
            return 1
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
