"""
Where the test data lives: certificates and credentials minted by the GENI
reference clearinghouse (see C{tests/fixtures/gcf/README.md}).
"""

from pathlib import Path

GCF = Path(__file__).resolve().parent / "fixtures" / "gcf"
