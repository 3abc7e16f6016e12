# -*- test-case-name: tests.cli.test_call,tests.cli.test_authority,tests.cli.test_credential -*-
"""
Command-line parsing shared by the C{geniam} subcommands.
"""

from __future__ import annotations

import getopt
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TextIO

from twisted.python import usage

from geniam.errors import GeniError
from geniam.options import GeniamOptions

EXIT_USAGE = 2
"""The exit status of a usage error."""


class InterspersedOptions(GeniamOptions):
    """Options that may also follow the positional arguments, GNU style."""

    def parseOptions(self, options: list[str] | None = None) -> None:  # noqa: N802 (usage.Options API)
        """Move every option before the positional arguments, then parse as usual."""
        arguments = list(sys.argv[1:] if options is None else options)
        try:
            found, positional = getopt.gnu_getopt(arguments, self.shortOpt, self.longOpt)
        except getopt.error as e:
            raise usage.UsageError(str(e)) from None
        takes_value = {"--" + name[:-1] for name in self.longOpt if name.endswith("=")}
        ordered: list[str] = []
        for option, value in found:
            if option in takes_value:
                ordered.append(f"{option}={value}")
            elif option.startswith("--") or not value:
                ordered.append(option)
            else:
                ordered.extend([option, value])
        super().parseOptions([*ordered, "--", *positional])


def run_command(
    program: str,
    options: usage.Options,
    argv: list[str],
    now: float | None,
    command: Callable[[float], int],
    err: TextIO | None = None,
    refused: int | None = None,
) -> int:
    """
    Parse C{argv} into C{options}, then run C{command(now)} and return its
    exit status.

    A usage error is printed to C{err} after C{program} with the usage of
    the subcommand (or of the command), and gives L{EXIT_USAGE}; C{--help}
    gives 0.

    @param now: the current time, POSIX seconds (the system clock if C{None}).
    @param err: where errors go (standard error if C{None}).
    @param refused: if given, a L{GeniError} is printed to C{err} after
        C{program} and gives this status; otherwise it propagates.
    """
    err = err if err is not None else sys.stderr
    try:
        options.parseOptions(argv)
        if now is None:
            now = datetime.now(tz=timezone.utc).timestamp()
        return command(now)
    except usage.UsageError as e:
        print(f"{program}: {e}", file=err)
        print(str(getattr(options, "subOptions", None) or options), file=err)
        return EXIT_USAGE
    except GeniError as e:
        if refused is None:
            raise
        print(f"{program}: {e.output}", file=err)
        return refused
    except SystemExit as e:
        return int(e.code or 0)
