# -*- test-case-name: tests.test_cli_call -*-
"""
Command-line parsing shared by the C{geniam} subcommands.
"""

from __future__ import annotations

import getopt
import sys

from twisted.python import usage


class InterspersedOptions(usage.Options):
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
