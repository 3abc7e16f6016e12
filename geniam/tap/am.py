# -*- test-case-name: tests.tap.test_agent,tests.loopback.test_am_agent -*-
"""
C{twistd geniam-am}: the aggregate manager's options and service tree.

With C{--agent HOST:PORT} the AM controls the island's gateway agent
(C{twistd geniam-agent}) over Perspective Broker on mutual TLS: it presents
its own certificate, checks the agent's against its trust roots (and its
URN, with C{--agent-urn}), proves the shared secret of
C{--agent-secret-file} if the agent has one, and stays connected, logging
in again after every reconnect. Without C{--agent} the AM runs in
I{simulated mode}: an in-process gateway
(L{geniam.agent.inprocess.InProcessGateway} on the simulated back end, in
memory) that applies nothing and forgets everything when the AM stops.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from twisted.application.service import IService
from twisted.logger import Logger
from twisted.python import usage

from geniam.booking.values import DEFAULT_ALLOCATION_TTL, DEFAULT_MAX_SLOT_LENGTH
from geniam.agent.inprocess import InProcessGateway
from geniam.calendar.resource import install_calendar
from geniam.calendar.sources import AggregateScheduleSource
from geniam.config import LISTENER_PARAMETERS, ControllerNetworksOption, ServerOptions, duration, positive_int
from geniam.tap.operatoroptions import POLICY_PARAMETERS, OperatorOption
from geniam.managers.operators import ADMIN_PATH, ADMIN_SIGNATURES, OperatorAPI, Operators
from geniam.managers.policy import BookingPolicy
from geniam.errors import GeniError
from geniam.gatewayconfig import ControllerPolicy
from geniam.managers.aggregate import AggregateInfo, AggregateManager
from geniam.managers.cm import CM_PATHS, CM_SIGNATURES, ComponentManager
from geniam.managers.driver import DEFAULT_DRIVER_POLL, GatewayDriver
from geniam.managers.island import IslandResourceManager
from geniam.managers.tickets import DEFAULT_TICKET_TTL, TicketManager
from geniam.managers.transactions import DEFAULT_TRANSACTION_TTL, TransactionManager
from geniam.protocols.signatures import API_V3_SIGNATURES, TRANSACTION_SIGNATURES
from geniam.observe.health import gateway_check, store_check
from geniam.observe.metrics import watch_gateway_link, watch_gateway_work, watch_store, watch_verifier
from geniam.protocols.xmlrpc import DEFAULT_MAX_BODY
from geniam.store.open import driver_lease, open_store
from geniam.protocols.listener import ListenerLimits
from geniam.tap.common import ServerTrust, ThreadPoolService, TLSXmlRpcService, listener_limits, server_trust, users_hint
from geniam.tap.failfast import StartupGuard, make_or_exit
from geniam.trust.context import context_maker
from geniam.trust.verifier import DEFAULT_DEADLINE, CredentialVerifier
from geniam.urn import parse_urn
from geniam.web.status import STATUS_OPTIONS, StatusListener


class Options(OperatorOption, ControllerNetworksOption, ServerOptions):
    """Flags of C{twistd geniam-am}; every one may also be set in the C{[am]} table of C{--config}."""

    role = "am"
    default_port = 8001
    synopsis = "[options]"
    optParameters = [
        ["database", None, None, "SQLite file (default <data-dir>/am.sqlite) or a PostgreSQL DSN (postgresql://... or 'dbname=...')."],
        ["url", None, None, "The URL clients use (default https://<interface>:<port>/)."],
        ["allocation-ttl", None, DEFAULT_ALLOCATION_TTL, "How long an unprovisioned allocation is held (e.g. 48h).", duration],
        ["ticket-ttl", None, DEFAULT_TICKET_TTL, "How long a ProtoGENI ticket may wait to be redeemed (e.g. 10m).", duration],
        ["transaction-ttl", None, DEFAULT_TRANSACTION_TTL, "How long a transaction stays open without commit or abort (e.g. 10m).", duration],
        ["max-body", None, DEFAULT_MAX_BODY, "Largest request body accepted, in bytes.", positive_int],
        ["gateway-host", None, None, "The host experimenters log in to during their slot (shown in manifests)."],
        ["threads", None, 4, "Worker threads for credential checks.", positive_int],
        ["verify-deadline", None, DEFAULT_DEADLINE, "How long checking one call's credentials may take before the call is refused (e.g. 5s).", duration],
        ["agent", None, None, "The gateway agent's HOST:PORT (default: simulated mode, an in-process simulated gateway)."],
        ["agent-urn", None, None, "The URN the agent's certificate must name (default: any aggregate certificate of the trust roots)."],
        ["agent-secret-file", None, None, "File holding the secret the agent was configured with (--secret-file), if any."],
        ["agent-timeout", None, 30.0, "Seconds a call to the gateway agent may take.", duration],
        ["driver-poll", None, DEFAULT_DRIVER_POLL, "How often a process sharing the database tries to become the island's gateway driver, and the driver checks it still is (e.g. 2s).", duration],
        *POLICY_PARAMETERS,
        *LISTENER_PARAMETERS,
        *STATUS_OPTIONS,
    ]

    def check(self) -> None:
        """Cross-check the AM's options."""
        from geniam.protocols.pbclient import parse_agent_address

        if self["url"] and not str(self["url"]).startswith("https://"):
            raise usage.UsageError("--url must be an https:// URL")
        if self["agent"]:
            try:
                parse_agent_address(self["agent"])
            except GeniError as e:
                raise usage.UsageError(f"--agent: {e.output}") from None
        else:
            for key in ("agent-urn", "agent-secret-file"):
                if self[key]:
                    raise usage.UsageError(f"--{key} needs --agent")
        if self["agent-urn"]:
            try:
                parse_urn(self["agent-urn"])
            except GeniError as e:
                raise usage.UsageError(f"--agent-urn: {e.output}") from None
        if self["agent-secret-file"] and not os.path.isfile(self["agent-secret-file"]):
            raise usage.UsageError(f"--agent-secret-file: no such file {self['agent-secret-file']}")
        self.controller_policy()
        self.booking_policy()
        self.operators()


class AggregateService(TLSXmlRpcService):
    """
    One aggregate manager: its store, island resource manager and TLS
    XML-RPC listener, started in that order and stopped in reverse.

    A gateway that is itself a service (the PB client of C{--agent}) is a
    child of this one: it starts connecting before the island's first
    check and stops after the island manager.

    The reactor does the I/O; C{clock} (the reactor by default) gives the
    time for bookings, credentials and certificates.

    @ivar manager: the L{AggregateManager} once started.
    """

    log = Logger()
    role = "aggregate manager"
    metrics_role = "am"

    def __init__(
        self,
        reactor: Any,
        trust: ServerTrust,
        store: Any,
        gateway: Any,
        port: int,
        interface: str,
        url: str | None = None,
        allocation_ttl: float = DEFAULT_ALLOCATION_TTL,
        max_slot_length: float = DEFAULT_MAX_SLOT_LENGTH,
        max_body: int = DEFAULT_MAX_BODY,
        gateway_host: str | None = None,
        threads: int = 4,
        clock: Any = None,
        limits: ListenerLimits = ListenerLimits(),
        verify_deadline: float = DEFAULT_DEADLINE,
        controller_policy: ControllerPolicy = ControllerPolicy(),
        status_port: int | None = None,
        status_interface: str = "127.0.0.1",
        ticket_ttl: float = DEFAULT_TICKET_TTL,
        transaction_ttl: float = DEFAULT_TRANSACTION_TTL,
        booking_policy: BookingPolicy | None = None,
        operators: Operators = Operators(),
        driver_poll: float = DEFAULT_DRIVER_POLL,
    ) -> None:
        super().__init__(reactor, trust, port, interface, url, max_body, clock, limits)
        self.operators = operators
        self.store = store
        self.gateway = gateway
        urn = parse_urn(self.urn)
        if urn.type != "authority":
            raise usage.UsageError(f"the AM certificate must name an authority URN, not {self.urn!r}")
        if IService.providedBy(gateway):
            gateway.setServiceParent(self)
        self.driver = GatewayDriver(driver_lease(store, reactor), self.clock, driver_poll)
        self.pool = ThreadPoolService("geniam-am-crypto", threads)
        self.pool.setServiceParent(self)
        self.resource_manager = IslandResourceManager(
            store,
            gateway,
            self.clock,
            urn.authority,
            switches=getattr(gateway, "switches", ()),
            links=getattr(gateway, "links", ()),
            allocation_ttl=allocation_ttl,
            max_slot_length=max_slot_length,
            controller_policy=controller_policy,
            driver=self.driver,
        )
        self.transactions = TransactionManager(self.resource_manager, self.clock, transaction_ttl)
        if booking_policy is not None:
            self.resource_manager.set_booking_policy(booking_policy)
        self.verifier = CredentialVerifier(
            trust.roots, self.clock, threadpool=self.pool.pool, reactor=reactor, deadline=verify_deadline
        )
        self.tickets = TicketManager(self.resource_manager, trust.identity, self.clock, ticket_ttl)
        self._gateway_host = gateway_host
        self.manager: AggregateManager | None = None
        watch_store(self.metrics, store)
        watch_verifier(self.metrics, self.verifier)
        watch_gateway_link(self.metrics, gateway)
        watch_gateway_work(self.metrics, self.resource_manager, self.driver)
        self.health.add_note("driver", lambda: "yes" if self.driver.driving else "no")
        self.health.add("store", store_check(store))
        if IService.providedBy(gateway):
            self.health.add("gateway", gateway_check(gateway))
        if status_port is not None:
            self.status = StatusListener(reactor, status_port, status_interface)
            install_calendar(self.status.root, AggregateScheduleSource(store, gateway, self.urn, self.clock), self.clock)

    async def start(self) -> None:
        """Open the store, start the island's checks and its transactions' timers (aborting overdue ones), then listen."""
        await self.store.start()
        await self.driver.start()
        await self.resource_manager.start()
        await self.transactions.start()
        self.manager = AggregateManager(
            self.resource_manager,
            AggregateInfo(self.urn, "", self._gateway_host),
            self.clock,
            self.transactions,
        )
        contexts = context_maker(self.verifier)
        cm = ComponentManager(self.tickets, self.manager, contexts, self.clock)
        await self.listen(
            self.manager,
            contexts,
            {**API_V3_SIGNATURES, **TRANSACTION_SIGNATURES},
            {
                **{path: (cm, CM_SIGNATURES) for path in CM_PATHS},
                # The operators' API, for the clients Operators names (FORBIDDEN to everyone else).
                ADMIN_PATH: (OperatorAPI(self.resource_manager, self.store, self.gateway, self.operators, self.clock), ADMIN_SIGNATURES),
            },
        )
        self.manager.info = AggregateInfo(self.urn, self.url, self._gateway_host)
        self.log.info("aggregate manager {urn} serving AM API v3 at {url}", urn=self.urn, url=self.url)
        if IService.providedBy(self.gateway):
            self.log.info("gateway: the gateway agent, over Perspective Broker")
        else:
            self.log.info("gateway: simulated in process (no --agent given)")

    async def wind_down(self) -> None:
        """Stop credential checks in flight, let bookings in flight finish, close the store, then stop the children."""
        self.verifier.stop()
        self.transactions.stop()
        await self.resource_manager.stop()
        await self.driver.stop()
        await self.store.stop()
        await super().wind_down()


def build(options: Options, reactor: Any) -> AggregateService:
    """Build the aggregate manager an C{Options} describes."""
    data_dir = Path(options["data-dir"])
    data_dir.mkdir(parents=True, exist_ok=True)
    trust = server_trust(options, "am", reactor)
    if trust.domain is not None:
        print(f"geniam-am: development trust domain in {trust.domain.path}")
        print(f"geniam-am: trust roots {trust.roots_path}; {users_hint(trust)}")
    store = open_store(options["database"], data_dir, "default", reactor)
    gateway = build_gateway(options, trust, reactor)
    return AggregateService(
        reactor,
        trust,
        store,
        gateway,
        options["port"],
        options["interface"],
        url=options["url"],
        allocation_ttl=options["allocation-ttl"],
        transaction_ttl=options["transaction-ttl"],
        max_slot_length=options["max-slot-length"],
        max_body=options["max-body"],
        gateway_host=options["gateway-host"],
        threads=options["threads"],
        limits=listener_limits(options),
        verify_deadline=options["verify-deadline"],
        controller_policy=options.controller_policy(),
        status_port=options["status-port"],
        status_interface=options["status-interface"],
        ticket_ttl=options["ticket-ttl"],
        booking_policy=options.booking_policy(),
        operators=options.operators(),
        driver_poll=options["driver-poll"],
    )


def build_gateway(options: Options, trust: ServerTrust, reactor: Any) -> Any:
    """
    The gateway the AM drives: the PB client of C{--agent}, presenting the
    AM's own identity and checking the agent against the AM's trust roots,
    or the in-process simulated gateway (simulated mode).

    @raise usage.UsageError: if the secret file cannot be read.
    """
    if not options["agent"]:
        return InProcessGateway(clock=reactor)
    from geniam.agent.service import read_secret
    from geniam.protocols.pbclient import make_gateway_agent

    secret = read_secret(options["agent-secret-file"]) if options["agent-secret-file"] else None
    return make_gateway_agent(
        reactor,
        options["agent"],
        trust.identity,
        trust.roots,
        expected_urn=options["agent-urn"],
        secret=secret,
        call_timeout=options["agent-timeout"],
    )


def makeService(options: Options) -> IService:
    """The twistd entry point: the aggregate manager on the global reactor, failing fast (see L{geniam.tap.failfast})."""
    from twisted.internet import reactor

    return StartupGuard(make_or_exit("geniam-am", build, options, reactor), "geniam-am", reactor, options=options)
