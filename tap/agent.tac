"""
The gateway agent as a twistd application.

    GENIAM_AGENT_ARGS="--config tap/agent.toml" twistd -ny tap/agent.tac

C{GENIAM_AGENT_ARGS} holds the flags of C{twistd geniam-agent} (see
C{twistd geniam-agent --help}); without any, the agent runs the simulated
back end on 127.0.0.1:8002 with a development trust domain in ./geniam-data.
"""

import os
import shlex

from twisted.application.service import Application
from twisted.internet import reactor

from geniam.agent.options import AgentOptions
from geniam.agent.service import make_agent_service

options = AgentOptions()
options.parseOptions(shlex.split(os.environ.get("GENIAM_AGENT_ARGS", "")))
application = Application("geniam-agent")
make_agent_service(options, reactor).setServiceParent(application)
