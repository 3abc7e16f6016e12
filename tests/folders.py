"""
Folders for tests that write files.

trial's C{mktemp} names a path relative to the working directory, which
is trial's C{_trial_temp} only while trial runs the test: a test run any
other way (C{python -m unittest} from the checkout) would write into the
checkout, and so would anything still writing through such a relative
path after trial has changed back to the checkout. L{temp_folder} gives
an absolute folder under the system's temporary directory instead,
removed when the test ends.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase


def temp_folder(case: SynchronousTestCase, prefix: str = "geniam-test-") -> Path:
    """A new, empty, absolute folder of C{case}'s, removed at its cleanup."""
    folder = Path(tempfile.mkdtemp(prefix=prefix)).resolve()
    case.addCleanup(shutil.rmtree, folder, True)
    return folder
