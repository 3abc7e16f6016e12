# -*- test-case-name: tests.tap.test_agent -*-
"""
The gateway agent as a .tac file: C{twistd -ny tap/agent.tac}.

C{GENIAM_AGENT_ARGS} holds the flags of C{twistd geniam-agent} (see
C{twistd geniam-agent --help}), for example
C{GENIAM_AGENT_ARGS="--config tap/agent.toml"}; without any, the agent runs
the simulated back end on 127.0.0.1:8002 with a development trust domain
in ./geniam-data. C{twistd -n geniam-agent ...} does the same.
"""

import os
import shlex

from twisted.application.service import Application

from geniam.tap.agent import Options, makeService

options = Options()
options.parseOptions(shlex.split(os.environ.get("GENIAM_AGENT_ARGS", "")))
application = Application("geniam-agent")
makeService(options).setServiceParent(application)
