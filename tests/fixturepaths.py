"""
Where the test data lives: certificates and credentials minted by the GENI
reference clearinghouse (see C{tests/fixtures/gcf/README.md}).
"""

from pathlib import Path

GCF = Path(__file__).resolve().parent / "fixtures" / "gcf"

REPO_ROOT = Path(__file__).resolve().parent.parent
"""The repository's top folder."""

FAKE_TOOLS = Path(__file__).resolve().parent / "fake_tools"
"""Fake executables that record their arguments."""
