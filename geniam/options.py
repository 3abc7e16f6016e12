# -*- test-case-name: tests.test_foundation -*-
"""
The base of every geniam command line's options, daemons and C{geniam}
subcommands alike.
"""

from __future__ import annotations

import sys

from twisted.python import usage

from geniam import __version__


class GeniamOptions(usage.Options):
    """L{usage.Options} whose C{--version} prints geniam's version (not Twisted's)."""

    def opt_version(self) -> None:
        """Print geniam's version and exit."""
        print(f"geniam {__version__}")
        sys.exit(0)
