"""
The geniam test suite, run with C{python -m twisted.trial tests}.
"""

from hypothesis import settings

settings.register_profile("geniam", deadline=None, derandomize=True, max_examples=60)
settings.load_profile("geniam")
