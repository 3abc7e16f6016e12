"""Allow C{python -m geniam}."""

import sys

from geniam.cli.main import main

sys.exit(main())
