# -*- test-case-name: tests.test_sm_tap -*-
"""
The slice manager as a .tac file: C{twistd -ny tap/sm.tac}.

The options come from the TOML file named by the environment variable
C{GENIAM_SM_CONFIG} (default C{sm.toml}); see L{geniam.tap.sm} for an
example. C{twistd -n geniam-sm --config sm.toml} does the same.
"""

import os

from twisted.application.service import Application

from geniam.tap.sm import Options, makeService

options = Options()
options.parseOptions(["--config", os.environ.get("GENIAM_SM_CONFIG", "sm.toml")])
application = Application("geniam-sm")
makeService(options).setServiceParent(application)
