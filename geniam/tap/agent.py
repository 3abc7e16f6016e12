# -*- test-case-name: tests.test_tap_agent -*-
"""
C{twistd geniam-agent}: the gateway agent's options and service tree.

The options are L{geniam.agent.options.AgentOptions}; the service is
L{geniam.agent.service.make_agent_service} on the global reactor, under a
L{geniam.tap.failfast.StartupGuard}.
"""

from __future__ import annotations

from twisted.application.service import IService

from geniam.agent.options import AgentOptions
from geniam.tap.failfast import StartupGuard, make_or_exit

Options = AgentOptions
"""The flags of C{twistd geniam-agent} (see L{AgentOptions})."""


def makeService(options: AgentOptions) -> IService:
    """The twistd entry point: the gateway agent on the global reactor, failing fast (see L{geniam.tap.failfast})."""
    from twisted.internet import reactor

    from geniam.agent.service import make_agent_service

    return StartupGuard(make_or_exit("geniam-agent", make_agent_service, options, reactor), "geniam-agent", reactor, options=options)
