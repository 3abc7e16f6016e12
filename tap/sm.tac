# -*- test-case-name: tests.tap.test_sm -*-
"""
The slice manager as a .tac file: C{twistd -ny tap/sm.tac}.

The options come from the TOML file named by the environment variable
C{GENIAM_SM_CONFIG} (default: C{sm.toml} beside this file, a commented
example). C{twistd -n geniam-sm --config tap/sm.toml} does the same.
"""

import os

from twisted.application.service import Application

from geniam.tap.sm import Options, makeService

options = Options()
default_config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sm.toml")
options.parseOptions(["--config", os.environ.get("GENIAM_SM_CONFIG", default_config)])
application = Application("geniam-sm")
makeService(options).setServiceParent(application)
