"""
Development trust domains for the loopback tests: each is made once per
test run (RSA key generation is slow) and copied into every test's own
folder (an absolute one, see L{tests.folders}).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from tests.folders import temp_folder

_made: dict[str, Path] = {}


def copied_domain(case: SynchronousTestCase, name: str, make: Callable[[Path], object]) -> Path:
    """
    Return a new folder of C{case}'s holding a copy of the trust domain
    C{make(folder)} writes; C{make} runs once per test run for each C{name}.
    The folder is absolute and outside the checkout, and removed when the
    test ends.
    """
    if name not in _made:
        folder = Path(tempfile.mkdtemp(prefix=f"geniam-{name}-test-"))
        make(folder)
        _made[name] = folder
    copy = temp_folder(case, f"geniam-{name}-") / "federation"
    shutil.copytree(_made[name], copy)
    return copy
