# -*- test-case-name: tests.tap.test_agent,tests.agent.test_service -*-
"""
C{twistd geniam-agent}: the gateway agent's options and service tree.

The options are L{geniam.agent.options.AgentOptions}; L{make_agent_service}
wires the agent's parts (L{geniam.agent.service}) to a mutual TLS listener,
and L{makeService} runs it under a L{geniam.tap.failfast.StartupGuard} on
the global reactor.
"""

from __future__ import annotations

from typing import Any

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService
from twisted.internet.defer import DeferredLock
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.python import usage
from twisted.python.threadpool import ThreadPool

from geniam.agent.backend import BlockingRunner
from geniam.agent.options import NEEDS_ALLOW, AgentOptions
from geniam.agent.service import (
    AgentChecker,
    BackendService,
    ConnectionsService,
    build_backend,
    make_agent_factory,
    read_secret,
    tls_peer_identity,
)
from geniam.errors import GeniError
from geniam.tap.common import server_trust
from geniam.trust.tls import server_tls_options
from geniam.tap.failfast import StartupGuard, make_or_exit

Options = AgentOptions
"""The flags of C{twistd geniam-agent} (see L{AgentOptions})."""


def makeService(options: AgentOptions) -> IService:
    """The twistd entry point: the gateway agent on the global reactor, failing fast (see L{geniam.tap.failfast})."""
    from twisted.internet import reactor

    return StartupGuard(make_or_exit("geniam-agent", make_agent_service, options, reactor), "geniam-agent", reactor, options=options)


def make_agent_service(options: AgentOptions, reactor: Any, clock: Any = None) -> MultiService:
    """
    Build the gateway agent: the back end's service and a PB listener over
    mutual TLS (C{SSL4ServerEndpoint} with the agent's certificate, client
    certificates required and verified against the trust roots). Without
    C{--certificate}, the identity and roots come from the development trust
    domain in C{<data-dir>/trust} (see L{geniam.tap.common.server_trust}).

    @param options: parsed L{AgentOptions}.
    @param reactor: listens, spawns processes and runs the thread pool's results.
    @param clock: the time peer certificates are checked at (default: C{reactor}).
    @raise usage.UsageError: if the identity, trust roots or secret cannot be loaded.
    """
    settings = options.settings
    try:
        trust = server_trust(options, "agent", reactor)
        identity = trust.identity
        tls = server_tls_options(identity, trust.roots, clock=clock or reactor)
    except usage.UsageError:
        raise
    except GeniError as e:
        raise usage.UsageError(f"cannot load the agent's TLS identity or trust roots: {e.output}") from None
    except (OSError, ValueError) as e:
        raise usage.UsageError(f"cannot load the agent's TLS identity or trust roots: {e}") from None
    secret = read_secret(settings.secret_file) if settings.secret_file else None
    agent_urn = str(identity.gid.urn or "")
    allowed = settings.allow
    if not allowed:
        if trust.domain is None:
            raise usage.UsageError(NEEDS_ALLOW)
        allowed = (trust.domain.aggregate_urn("am"),)
        print(f"geniam-agent: serving the development aggregate {allowed[0]} (name others with --allow)")

    top = MultiService()
    pool = ThreadPool(minthreads=0, maxthreads=1, name="geniam-agent-io")
    backend = build_backend(settings, reactor, BlockingRunner(pool, reactor))
    lock = DeferredLock()
    backend_service = BackendService(backend, lock, pool)
    backend_service.setServiceParent(top)
    checker = AgentChecker(allowed, own_urn=agent_urn, secret=secret)
    factory = make_agent_factory(backend, lock, checker, tls_peer_identity(tls), agent_urn, settings.controller_policy)
    endpoint = SSL4ServerEndpoint(reactor, settings.port, tls, interface=settings.interface)
    ConnectionsService(factory).setServiceParent(top)
    listener = StreamServerEndpointService(endpoint, factory)
    listener._raiseSynchronously = True
    listener.setServiceParent(top)
    if settings.status_port is not None:
        from geniam.agent.status import AgentStatusService

        AgentStatusService(reactor, settings.status_port, settings.status_interface, factory, listener, backend_service).setServiceParent(top)
    return top
