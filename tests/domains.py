"""
Development trust domains for the loopback tests: each is made once per
test run (RSA key generation is slow) and copied into every test's own
folder.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

_made: dict[str, Path] = {}


def copied_domain(case: SynchronousTestCase, name: str, make: Callable[[Path], object]) -> Path:
    """
    Return a new folder of C{case}'s holding a copy of the trust domain
    C{make(folder)} writes; C{make} runs once per test run for each C{name}.
    """
    if name not in _made:
        folder = Path(tempfile.mkdtemp(prefix=f"geniam-{name}-test-"))
        make(folder)
        _made[name] = folder
    copy = Path(case.mktemp())
    shutil.copytree(_made[name], copy)
    return copy
