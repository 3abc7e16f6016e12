# -*- test-case-name: tests.tap.test_agent -*-
"""
The aggregate manager as a .tac file: C{twistd -ny tap/am.tac}.

C{GENIAM_AM_ARGS} holds the flags of C{twistd geniam-am} (see
C{twistd geniam-am --help}), for example
C{GENIAM_AM_ARGS="--config tap/am.toml"}; without any, the AM listens on
127.0.0.1:8001 with a development trust domain in ./geniam-data and a
simulated gateway in process. C{twistd -n geniam-am ...} does the same.
"""

import os
import shlex

from twisted.application.service import Application

from geniam.tap.am import Options, makeService

options = Options()
options.parseOptions(shlex.split(os.environ.get("GENIAM_AM_ARGS", "")))
application = Application("geniam-am")
makeService(options).setServiceParent(application)
