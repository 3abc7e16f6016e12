# -*- test-case-name: tests.tap.test_sm -*-
"""
C{twistd geniam-sm}: the slice manager's options and service tree.

The slice manager serves AM API v3 over TLS (client certificates
required) and calls its peers over TLS with its own certificate, through
one keep-alive connection pool. Each peer's certificate must chain to the
trust roots; a peer configured as C{URN=URL} must present that URN, and a
certificate naming host names must name the URL's host.

Example C{sm.toml}::

    port = 8003
    trust-roots = "/etc/geniam/roots"
    certificate = "/etc/geniam/sm-cert.pem"
    private-key = "/etc/geniam/sm-key.pem"

    [sm]
    aggregate = ["urn:publicid:IDN+island1.example+authority+am=https://island1.example:8001/",
                 "https://island2.example:8001/"]
    credential = ["/etc/geniam/sm-credential.xml"]
    peer-timeout = "30s"
    deadline = "60s"
    hung-after = "5s"
    probe-timeout = "5s"
    undo-retry = "15s"
    commit-retry = "5s"

Failed Allocates still to be undone are kept in C{<data-dir>/sm-undo.json}
and resumed at start.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import TimerService
from twisted.application.service import IService
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.client import HTTPConnectionPool

from geniam.calendar.resource import install_calendar
from geniam.calendar.schedule import island_name
from geniam.calendar.sources import FederationScheduleSource
from geniam.config import LISTENER_PARAMETERS, ServerOptions, duration, duration_or_off, positive_int
from geniam.errors import GeniError
from geniam.managers.slice import SliceManager, SliceManagerInfo, SliceManagerSettings
from geniam.managers.twophase import DEFAULT_COMMIT_RETRY
from geniam.managers.undo import JOURNAL_NAME, UndoJournal
from geniam.protocols.signatures import API_V3_SIGNATURES, TRANSACTION_SIGNATURES
from geniam.protocols.peer import XmlRpcPeer
from geniam.protocols.xmlrpc import DEFAULT_MAX_BODY
from geniam.protocols.listener import DESCRIPTOR_RESERVE, ListenerLimits
from geniam.tap.common import ServerTrust, ThreadPoolService, TLSXmlRpcService, listener_limits, server_trust
from geniam.tap.failfast import StartupGuard, make_or_exit
from geniam.trust.context import context_maker
from geniam.trust.credential import GENI_SFA, as_struct, parse_credential
from geniam.trust.forwarding import CredentialForwarder
from geniam.trust.mint import user_credential
from geniam.trust.tls import GeniTLSPolicy
from geniam.trust.verifier import DEFAULT_DEADLINE, CredentialVerifier
from geniam.urn import parse_urn
from geniam.observe.metrics import watch_slice_manager, watch_verifier
from geniam.web.status import STATUS_OPTIONS, StatusListener

OWN_CREDENTIAL_LIFETIME = 30 * 86400.0
"""How long the credential a development slice manager mints for itself lasts."""


def parse_aggregate(text: str) -> tuple[str | None, str]:
    """
    Read an C{--aggregate} value: C{URL} or C{URN=URL}.

    @return: the URN (or C{None}) and the URL.
    @raise usage.UsageError: for a malformed value.
    """
    text = str(text).strip()
    urn: str | None = None
    if text.lower().startswith("urn:") and "=" in text:
        urn, text = text.split("=", 1)
        try:
            urn = str(parse_urn(urn.strip()))
        except GeniError as e:
            raise usage.UsageError(f"--aggregate: {e.output}") from None
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise usage.UsageError(f"--aggregate: {text!r} is not an https:// URL")
    return urn, text


class Options(ServerOptions):
    """Flags of C{twistd geniam-sm}; every one may also be set in the C{[sm]} table of C{--config}."""

    role = "sm"
    default_port = 8003
    synopsis = "[options] --aggregate URL [--aggregate URL ...]"
    optParameters = [
        ["url", None, None, "The URL clients use (default https://<interface>:<port>/)."],
        ["peer-timeout", None, 30.0, "How long one aggregate may take to answer one call (e.g. 30s).", duration],
        ["deadline", None, 60.0, "How long a whole call may take; then it answers with what it has.", duration],
        ["max-concurrency", None, 512, "Calls in flight to all aggregates together.", positive_int],
        ["cache-ttl", None, 60.0, "How long a merged advertisement is served from the cache (0: no cache).", duration_or_off],
        ["partial-cache-ttl", None, 5.0, "How long an advertisement lacking an aggregate is cached (0: never).", duration_or_off],
        ["stale-ttl", None, None, "How long past --cache-ttl it is served while refreshed (default: --cache-ttl).", duration],
        ["call-id-window", None, 600.0, "How long an answer is kept for repeats of its call_id.", duration],
        ["breaker-failures", None, 5, "Consecutive failures that stop calls to an aggregate.", positive_int],
        ["breaker-reset", None, 30.0, "How long before a stopped aggregate is probed again.", duration],
        ["hung-after", None, 5.0, "How long a call may be in flight before its aggregate is checked for a hang.", duration],
        ["probe-timeout", None, 5.0, "How long a probe's GetVersion may take, connection included.", duration],
        ["probe-interval", None, 5.0, "How long after an aggregate's circuit opens it is first probed.", duration],
        ["probe-max-interval", None, 60.0, "The longest interval between probes of an aggregate still down.", duration],
        ["undo-retry", None, 15.0, "How often a pending undo of a failed Allocate is retried.", duration],
        ["commit-retry", None, DEFAULT_COMMIT_RETRY, "How often a two-phase Commit that got no answer is retried.", duration],
        ["undo-give-up", None, 172800.0, "How long a pending undo is retried before it is given up.", duration],
        ["refresh-interval", None, 600.0, "How often each aggregate's GetVersion is asked again.", duration],
        ["max-body", None, DEFAULT_MAX_BODY, "Largest request body accepted, in bytes.", positive_int],
        ["threads", None, 4, "Worker threads for credential checks and RSpec merging.", positive_int],
        *LISTENER_PARAMETERS,
        ["verify-deadline", None, DEFAULT_DEADLINE, "How long checking one call's credentials may take before the call is refused (e.g. 5s).", duration],
        *STATUS_OPTIONS,
    ]

    def __init__(self) -> None:
        super().__init__()
        # Plain dict updates: these lists are not "given" until a flag or the file fills them.
        self.update({"aggregate": [], "credential": []})

    def opt_aggregate(self, value: str) -> None:
        """A peer aggregate or slice manager: URL, or URN=URL to require that URN (repeatable)."""
        self["aggregate"].append(value)

    def opt_credential(self, value: str) -> None:
        """A credential file of the slice manager's own, used to list resources (repeatable)."""
        self["credential"].append(value)

    def check(self) -> None:
        """Cross-check the slice manager's options."""
        if self["url"] and not str(self["url"]).startswith("https://"):
            raise usage.UsageError("--url must be an https:// URL")
        if not self["aggregate"]:
            raise usage.UsageError("give at least one --aggregate URL")
        self["aggregates"] = [parse_aggregate(a) for a in self["aggregate"]]
        urls = [url for _, url in self["aggregates"]]
        if len(set(urls)) != len(urls):
            raise usage.UsageError("--aggregate: the same URL is given twice")
        for path in self["credential"]:
            if not os.path.isfile(path):
                raise usage.UsageError(f"--credential: no such file {path}")
        if self["probe-max-interval"] < self["probe-interval"]:
            raise usage.UsageError("--probe-max-interval must be at least --probe-interval")

    def settings(self) -> SliceManagerSettings:
        """The slice manager's tunables from these options."""
        return SliceManagerSettings(
            peer_timeout=self["peer-timeout"],
            deadline=self["deadline"],
            max_concurrency=self["max-concurrency"],
            cache_ttl=self["cache-ttl"],
            stale_ttl=self["stale-ttl"],
            call_id_window=self["call-id-window"],
            breaker_failures=self["breaker-failures"],
            breaker_reset=self["breaker-reset"],
            hung_after=self["hung-after"],
            probe_timeout=self["probe-timeout"],
            probe_interval=self["probe-interval"],
            probe_max_interval=self["probe-max-interval"],
            partial_cache_ttl=self["partial-cache-ttl"],
            undo_retry=self["undo-retry"],
            undo_give_up=self["undo-give-up"],
            commit_retry=self["commit-retry"],
        )


def read_credentials(paths: list[str]) -> list[dict[str, Any]]:
    """
    Read credential files as AM API v3 credential structs.

    @raise usage.UsageError: for an unreadable or malformed credential.
    """
    structs = []
    for path in paths:
        try:
            text = Path(path).read_text(encoding="utf-8")
            signed = parse_credential(text)
        except (OSError, UnicodeDecodeError, GeniError) as e:
            reason = e.output if isinstance(e, GeniError) else str(e)
            raise usage.UsageError(f"--credential {path}: {reason}") from None
        structs.append(as_struct(text, signed.kind))
    return structs


class _TlsPeer:
    """An L{XmlRpcPeer} that can tell the URN its TLS connection verified."""

    def __init__(self, peer: XmlRpcPeer, policy: GeniTLSPolicy) -> None:
        self._peer = peer
        self._policy = policy
        self.url = peer.url

    def call(self, method: str, *params: Any) -> Deferred[Any]:
        return self._peer.call(method, *params)

    def verified_urn(self) -> str | None:
        parts = urlsplit(self.url)
        gid = self._policy.peer_gid(parts.hostname or "", parts.port or 443)
        return gid.urn if gid is not None else None


class SliceManagerService(TLSXmlRpcService):
    """
    One slice manager: its TLS XML-RPC listener, its client to the peers,
    and a periodic refresh of the peers' versions and the caches.

    L{when_started} fires once it listens and has asked its peers'
    versions once.

    @ivar manager: the L{SliceManager}.
    @ivar forwarding: what the slice manager may forward of a caller's
        credentials (L{CredentialForwarder}).
    @ivar contexts: builds each call's context (the verifier and the
        forwarding policy).
    @ivar pool: the keep-alive connection pool to the peers.
    """

    log = Logger()
    role = "slice manager"
    metrics_role = "sm"

    def __init__(
        self,
        reactor: Any,
        trust: ServerTrust,
        aggregates: list[tuple[str | None, str]],
        own_credentials: list[Any],
        port: int,
        interface: str,
        url: str | None = None,
        settings: SliceManagerSettings = SliceManagerSettings(),
        max_body: int = DEFAULT_MAX_BODY,
        threads: int = 4,
        refresh_interval: float = 600.0,
        clock: Any = None,
        limits: ListenerLimits = ListenerLimits(),
        verify_deadline: float = DEFAULT_DEADLINE,
        data_dir: str | Path | None = None,
        status_port: int | None = None,
        status_interface: str = "127.0.0.1",
    ) -> None:
        """
        @param data_dir: where the undo journal of failed Allocates is kept
            (C{sm-undo.json}); in memory only when C{None}.
        """
        super().__init__(reactor, trust, port, interface, url, max_body, clock, limits)
        parse_urn(self.urn)
        self.threads = ThreadPoolService("geniam-sm-workers", threads)
        self.threads.setServiceParent(self)
        self.verifier = CredentialVerifier(
            trust.roots, self.clock, threadpool=self.threads.pool, reactor=reactor, deadline=verify_deadline
        )
        expected = {}
        for urn, peer_url in aggregates:
            if urn is not None:
                parts = urlsplit(peer_url)
                expected[f"{parts.hostname}:{parts.port or 443}"] = urn
        self.policy = GeniTLSPolicy(trust.identity, trust.roots, expected, clock=self.clock)
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 8
        peers = [
            _TlsPeer(XmlRpcPeer(peer_url, reactor, self.policy, self.pool, timeout=settings.peer_timeout), self.policy)
            for _, peer_url in aggregates
        ]
        self.forwarding = CredentialForwarder(self.verifier, trust.identity.gid, own_credentials)
        self.contexts = context_maker(self.verifier, self.forwarding)
        self.manager = SliceManager(
            peers,
            self.clock,
            SliceManagerInfo(self.urn, url or ""),
            settings,
            peer_urns={peer_url: urn for urn, peer_url in aggregates if urn is not None},
            threadpool=self.threads.pool,
            reactor=reactor,
            undo_journal=UndoJournal(Path(data_dir) / JOURNAL_NAME if data_dir is not None else None),
        )
        watch_slice_manager(self.metrics, self.manager)
        watch_verifier(self.metrics, self.verifier)
        self.refresher = TimerService(refresh_interval, self._refresh)
        self.refresher.clock = self.clock
        self.refresher.setServiceParent(self)
        self._first_round: Deferred[None] | None = None
        if status_port is not None:
            self.status = StatusListener(reactor, status_port, status_interface)
            source = FederationScheduleSource(
                self.manager, self.contexts(trust.identity.gid, own_credentials), self.clock, f"Federation of {island_name(self.urn)}"
            )
            install_calendar(self.status.root, source, self.clock)

    def _refresh(self) -> Deferred[None]:
        """Ask every peer's GetVersion again and drop expired cache entries; never fails."""
        self.manager.cache.expire()
        self.manager.replay.expire()
        d = self.manager.learn_versions()
        if self._first_round is None:
            self._first_round = self.manager.learn_versions()
        d.addErrback(lambda f: self.log.failure("refreshing the peers' versions failed", f))
        return d

    async def start(self) -> None:
        """Listen (the workers and the refresh run already), then wait for the first round of versions."""
        await self.listen(self.manager, self.contexts, {**API_V3_SIGNATURES, **TRANSACTION_SIGNATURES})
        self.manager.info = SliceManagerInfo(self.urn, self.url)
        self.log.info(
            "slice manager {urn} serving AM API v3 at {url} for {count} aggregates",
            urn=self.urn,
            url=self.url,
            count=len(self.manager.records),
        )
        self.manager.start_background()
        if self._first_round is not None:
            await self._first_round

    async def wind_down(self) -> None:
        """Stop credential checks in flight, probing, undo retries, refreshing and the workers, then close the peer connections."""
        self.verifier.stop()
        self.manager.stop_background()
        await super().wind_down()
        await self.pool.closeCachedConnections()


def own_credentials(options: Options, trust: ServerTrust, reactor: Any) -> list[Any]:
    """
    The slice manager's own credentials: the C{--credential} files, or,
    in a development trust domain, a user credential it mints for itself.
    """
    if options["credential"]:
        return read_credentials(options["credential"])
    if trust.domain is not None:
        now = reactor.seconds()
        xml = user_credential(trust.domain.ca, trust.identity.gid, now + OWN_CREDENTIAL_LIFETIME)
        return [as_struct(xml, GENI_SFA)]
    return []


def build(options: Options, reactor: Any) -> SliceManagerService:
    """Build the slice manager an C{Options} describes."""
    Path(options["data-dir"]).mkdir(parents=True, exist_ok=True)
    trust = server_trust(options, "sm", reactor)
    if trust.domain is not None:
        print(f"geniam-sm: development trust domain in {trust.domain.path}")
    credentials = own_credentials(options, trust, reactor)
    if not credentials:
        print("geniam-sm: no --credential given: ListResources needs the callers' speaks-for credentials")
    return SliceManagerService(
        reactor,
        trust,
        options["aggregates"],
        credentials,
        options["port"],
        options["interface"],
        url=options["url"],
        settings=options.settings(),
        max_body=options["max-body"],
        threads=options["threads"],
        refresh_interval=options["refresh-interval"],
        # The calls to the aggregates need descriptors of their own.
        limits=listener_limits(options, DESCRIPTOR_RESERVE + options["max-concurrency"]),
        verify_deadline=options["verify-deadline"],
        data_dir=options["data-dir"],
        status_port=options["status-port"],
        status_interface=options["status-interface"],
    )


def makeService(options: Options) -> IService:
    """The twistd entry point: the slice manager on the global reactor, failing fast (see L{geniam.tap.failfast})."""
    from twisted.internet import reactor

    return StartupGuard(make_or_exit("geniam-sm", build, options, reactor), "geniam-sm", reactor, options=options)
