# -*- test-case-name: tests.trust.test_tls,tests.trust.test_tls_identities -*-
"""
TLS with GENI identities: mutual authentication against L{TrustRoots}.

Servers (aggregates, the Slice Manager, the gateway agent) require a client
certificate that chains to the trust roots; the client may send its
issuers along (omni sends the user certificate followed by the
authority's), the roots alone form the trust store. OpenSSL checks the
chain during the handshake; L{peer_gid} then applies the GENI rules
(validity at the reactor's time, CA and namespace checks) with
L{TrustRoots.verify} and returns the caller's L{GID}.

Clients present their certificate and chain and check the server the GENI
way: GENI aggregate certificates name a URN, not a host, so the server's
chain must lead to the roots and, when one is expected, its URN must be the
expected one; the host name is checked only if the certificate names DNS
names or IP addresses.
"""

from __future__ import annotations

import ipaddress
import weakref
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import FILETYPE_ASN1, X509, PKey, dump_certificate
from service_identity import CertificateError, VerificationError
from service_identity.hazmat import (
    DNS_ID,
    DNSPattern,
    IPAddress_ID,
    IPAddressPattern,
    ServiceID,
    verify_service_identity,
)
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IReactorTime,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from geniam.timeutil import from_datetime, to_datetime
from geniam.trust.gid import GID, MAX_PATH_LENGTH, TrustError, TrustRoots
from geniam.trust.identity import Identity
from geniam.urn import same_urn

MINIMUM_TLS_VERSION = TLSVersion.TLSv1_2
"""The oldest protocol version we speak."""

_log = Logger()


def _default_clock(clock: IReactorTime | None) -> IReactorTime:
    if clock is not None:
        return clock
    from twisted.internet import reactor

    return reactor  # type: ignore[return-value]


def _certificate_options(identity: Identity | None, roots: TrustRoots, sessions: bool = False) -> CertificateOptions:
    """
    Build the Twisted options: our certificate and chain, the roots as the only trust store.

    Giving a trust root makes the peer's certificate required (on a server,
    C{VERIFY_PEER | VERIFY_FAIL_IF_NO_PEER_CERT | VERIFY_CLIENT_ONCE}).

    @param sessions: offer TLS session resumption from a server-side
        session cache (TLS 1.3 tickets that name a cached session); a
        resumed session carries the client certificate its full handshake
        authenticated. Stateless tickets, which carry the whole session
        (client certificate included) encrypted, are not issued: they cost
        every full handshake more than resumption saves the clients that
        never resume.
    """
    trust_root = trustRootFromCertificates(
        [Certificate(X509.from_cryptography(c)) for c in roots.certificates]
    )
    kwargs: dict[str, Any] = {}
    if identity is not None:
        kwargs = {
            "privateKey": PKey.from_cryptography_key(identity.private_key),
            "certificate": X509.from_cryptography(identity.gid.certificate),
            "extraCertChain": [X509.from_cryptography(c) for c in identity.gid.chain],
        }
    return CertificateOptions(
        trustRoot=trust_root,
        verifyDepth=MAX_PATH_LENGTH,
        raiseMinimumTo=MINIMUM_TLS_VERSION,
        enableSessions=sessions,
        **kwargs,
    )


def _pin_verification_time(connection: SSL.Connection, clock: IReactorTime | None) -> None:
    """
    Make OpenSSL check validity windows at the clock's time.

    The shared store's time is set again for every new connection, so
    OpenSSL and L{TrustRoots.verify} agree on "now" (the reactor's time in
    production, a pinned L{twisted.internet.task.Clock} in tests).
    """
    now = _default_clock(clock).seconds()
    connection.get_context().get_cert_store().set_time(to_datetime(now))  # type: ignore[union-attr]


class _VerificationTimePin:
    """
    L{_pin_verification_time} for one shared context, done only when the
    clock has moved to another second since the last connection (validity
    windows are whole seconds), so a busy server does not set it per connection.
    """

    def __init__(self, clock: IReactorTime | None) -> None:
        self._clock = clock
        self._pinned: int | None = None

    def __call__(self, connection: SSL.Connection) -> None:
        second = int(_default_clock(self._clock).seconds())
        if second != self._pinned:
            _pin_verification_time(connection, self._clock)
            self._pinned = second


def _find_tls_connection(transport_or_request: object) -> SSL.Connection | None:
    """Find the OpenSSL connection under a TLS transport, a protocol or a twisted.web request."""
    pending: list[object] = [transport_or_request]
    seen: set[int] = set()
    while pending and len(seen) < 16:
        candidate = pending.pop(0)
        if candidate is None or id(candidate) in seen:
            continue
        seen.add(id(candidate))
        if isinstance(candidate, SSL.Connection):
            return candidate
        get_handle = getattr(candidate, "getHandle", None)
        if callable(get_handle):
            try:
                handle = get_handle()
            except Exception:
                handle = None
            if isinstance(handle, SSL.Connection):
                return handle
        for attribute in ("transport", "channel"):
            pending.append(getattr(candidate, attribute, None))
    return None


def _as_cryptography(cert: X509 | x509.Certificate) -> x509.Certificate:
    return cert if isinstance(cert, x509.Certificate) else cert.to_cryptography()


def _gid_from_connection(connection: SSL.Connection) -> GID:
    """
    The peer's certificate and the chain it sent, as an unverified L{GID}.

    @raise TrustError: if the peer sent no certificate.
    """
    leaf = connection.get_peer_certificate()
    if leaf is None:
        raise TrustError("the peer presented no certificate")
    certificate = _as_cryptography(leaf)
    sent = [_as_cryptography(c) for c in (connection.get_peer_cert_chain() or [])]
    # A client's view of the chain starts with the server's own certificate.
    chain = [c for c in sent if c != certificate]
    return GID(certificate, chain)


def peer_certificate_gid(transport_or_request: object) -> GID:
    """
    Return the peer's certificate and the chain it sent, B{unverified}.

    Use L{peer_gid} to learn who the peer is; this is for diagnostics.

    @param transport_or_request: a TLS transport (L{twisted.protocols.tls.TLSMemoryBIOProtocol}),
        a protocol connected to one, or a L{twisted.web.server.Request}.
    @raise TrustError: if there is no TLS connection or no peer certificate.
    """
    connection = _find_tls_connection(transport_or_request)
    if connection is None:
        raise TrustError("not a TLS connection: no peer certificate available")
    return _gid_from_connection(connection)


def peer_gid(transport_or_request: object, roots: TrustRoots, clock: IReactorTime | None = None) -> GID:
    """
    Return the verified L{GID} of the peer of a TLS connection.

    Reads the peer's certificate and the chain it sent, and checks them with
    L{TrustRoots.verify} at C{clock.seconds()} (validity, CA and namespace
    rules). Works on servers (the caller) and clients (the server).

    @param transport_or_request: a TLS transport, a protocol connected to
        one, or a L{twisted.web.server.Request} (via its channel's transport).
    @param clock: the time source; the global reactor if C{None}.
    @raise TrustError: if there is no certificate or it is not trusted.
    """
    gid = peer_certificate_gid(transport_or_request)
    roots.verify(gid, _default_clock(clock).seconds())
    return gid


def _handle_of(transport_or_request: object) -> SSL.Connection | None:
    """The OpenSSL connection of a twisted.web request over TLS, found the short way, else searched for."""
    transport = getattr(getattr(transport_or_request, "channel", None), "transport", None)
    get_handle = getattr(transport, "getHandle", None)
    if get_handle is not None:
        handle = get_handle()
        if isinstance(handle, SSL.Connection):
            return handle
    return _find_tls_connection(transport_or_request)


def _der(certificate: X509) -> bytes:
    return dump_certificate(FILETYPE_ASN1, certificate)


def _verified(gid: GID, path: tuple[x509.Certificate, ...]) -> tuple[GID, float, float]:
    """A verified GID with the window in which every certificate of its path is valid."""
    return (
        gid,
        max(from_datetime(c.not_valid_before_utc) for c in path),
        min(from_datetime(c.not_valid_after_utc) for c in path),
    )


IDENTITY_MEMO_SIZE = 4096
"""How many verified client certificates a server remembers (L{CallerIdentities})."""


class CallerIdentities:
    """
    The verified identities of a server's TLS clients, computed once.

    Per TLS connection the verified L{GID} is kept (weakly, for as long as
    the connection lives): the certificate of a connection cannot change.
    Per client certificate (its DER) the GENI checks of L{TrustRoots.verify}
    are remembered, with the validity window of the path they built, so a
    new connection with a known certificate, and a resumed TLS session
    (whose client does not send its chain again), costs a lookup. The
    window is checked against the clock on every call; outside it the
    certificate is verified again, which gives the precise refusal.
    """

    def __init__(self, roots: TrustRoots, clock: IReactorTime | None = None, size: int = IDENTITY_MEMO_SIZE) -> None:
        self.roots = roots
        self._clock = clock
        self._size = size
        self._connections: weakref.WeakKeyDictionary[SSL.Connection, tuple[GID, float, float]] = (
            weakref.WeakKeyDictionary()
        )
        self._certificates: OrderedDict[bytes, tuple[tuple[GID, float, float], list[bytes]]] = OrderedDict()

    def caller(self, transport_or_request: object) -> GID:
        """
        The verified GID of the peer of a TLS connection (see L{peer_gid}).

        @raise TrustError: if there is no certificate or it is not trusted now.
        """
        connection = _handle_of(transport_or_request)
        if connection is None:
            raise TrustError("not a TLS connection: no peer certificate available")
        now = _default_clock(self._clock).seconds()
        known = self._connections.get(connection)
        if known is None:
            known = self._by_certificate(connection, now)
            self._connections[connection] = known
        gid, not_before, not_after = known
        if not not_before <= now <= not_after:
            # Verified again: the refusal says which certificate and why.
            known = _verified(gid, self.roots.verify(gid, now))
            self._connections[connection] = known
        return gid

    def _by_certificate(self, connection: SSL.Connection, now: float) -> tuple[GID, float, float]:
        leaf = connection.get_peer_certificate()
        if leaf is None:
            raise TrustError("the peer presented no certificate")
        key = _der(leaf)
        remembered = self._certificates.get(key)
        if remembered is not None:
            known, chain = remembered
            sent = [der for der in map(_der, connection.get_peer_cert_chain() or []) if der != key]
            # A resumed session brings no chain; a full handshake must bring the same one.
            if not sent or sent == chain:
                self._certificates.move_to_end(key)
                return known
        gid = _gid_from_connection(connection)
        known = _verified(gid, self.roots.verify(gid, now))
        self._certificates[key] = (known, [c.public_bytes(Encoding.DER) for c in gid.chain])
        while len(self._certificates) > self._size:
            self._certificates.popitem(last=False)
        return known


@implementer(IOpenSSLServerConnectionCreator)
class GeniServerTLSOptions:
    """
    Server TLS that requires a client certificate chaining to the trust roots.

    Give it to L{twisted.internet.endpoints.SSL4ServerEndpoint},
    C{listenSSL} or L{twisted.protocols.tls.TLSMemoryBIOFactory}. The server
    sends its identity's certificate chain; TLS 1.2 is the minimum.

    OpenSSL checks the client's chain (validity at the clock's time); the
    GENI rules (CA and namespace checks) are applied by L{peer_gid}, so the
    application can answer a refused caller with a GENI error. The OpenSSL
    context is built once; clients may resume their TLS sessions (from the
    server's session cache), and a caller's identity is computed once per
    connection and its GENI checks once per certificate (L{CallerIdentities}).

    @ivar identity: our identity.
    @ivar roots: the roots client certificates must chain to.
    @ivar callers: the identities of the clients.
    """

    def __init__(self, identity: Identity, roots: TrustRoots, clock: IReactorTime | None = None) -> None:
        self.identity = identity
        self.roots = roots
        self._clock = clock
        self._options = _certificate_options(identity, roots, sessions=True)
        self._pin = _VerificationTimePin(clock)
        self.callers = CallerIdentities(roots, clock)

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """Create the OpenSSL connection for one accepted TLS connection."""
        connection = self._options.serverConnectionForTLS(tlsProtocol)
        self._pin(connection)
        return connection

    def getContext(self) -> SSL.Context:
        """Return the shared OpenSSL context, for APIs that want a context factory."""
        return self._options.getContext()

    def peer_gid(self, transport_or_request: object) -> GID:
        """The verified GID of the client of a connection accepted with these options; see L{CallerIdentities}."""
        return self.callers.caller(transport_or_request)


def server_tls_options(
    identity: Identity, roots: TrustRoots, clock: IReactorTime | None = None
) -> GeniServerTLSOptions:
    """
    Return server TLS options requiring a client certificate chained to C{roots}.

    @param clock: the time source of L{GeniServerTLSOptions.peer_gid}; the global reactor if C{None}.
    """
    return GeniServerTLSOptions(identity, roots, clock)


def _host_patterns(certificate: x509.Certificate) -> list[DNSPattern | IPAddressPattern]:
    """
    The DNS names and IP addresses of a certificate's subjectAltName, as service_identity patterns.

    Built here because service_identity would also read the GENI C{urn:}
    URIs of the subjectAltName as service URIs, and fail on them.
    """
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    patterns: list[DNSPattern | IPAddressPattern] = [
        DNSPattern.from_bytes(name.encode("utf-8")) for name in san.get_values_for_type(x509.DNSName)
    ]
    for ip in san.get_values_for_type(x509.IPAddress):
        if isinstance(ip, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            patterns.append(IPAddressPattern(pattern=ip))
    return patterns


def _is_ip(hostname: str) -> bool:
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


@implementer(IOpenSSLClientConnectionCreator)
class GeniClientTLSOptions:
    """
    Client TLS that presents our certificate and checks the server the GENI way.

    After the handshake the server's chain is verified with
    L{TrustRoots.verify}; if C{expected_urn} is set, the server's URN must be
    it; if a host name is known and the certificate names DNS names or IP
    addresses, one must match. A failed check aborts the connection with
    a L{TrustError} as the reason.
    """

    def __init__(
        self,
        options: CertificateOptions,
        roots: TrustRoots,
        hostname: str | None = None,
        expected_urn: str | None = None,
        clock: IReactorTime | None = None,
        on_verified: Callable[[GID], object] | None = None,
    ) -> None:
        self._options = options
        self.roots = roots
        self.hostname = hostname
        self.expected_urn = expected_urn
        self._clock = clock
        self._on_verified = on_verified

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """Create the OpenSSL connection for one outgoing TLS connection."""
        connection = self._options.clientConnectionForTLS(tlsProtocol)
        _pin_verification_time(connection, self._clock)
        if self.hostname and not _is_ip(self.hostname):
            try:
                connection.set_tlsext_host_name(self.hostname.encode("idna"))
            except UnicodeError:
                pass
        protocol_box = [tlsProtocol]

        def info_callback(conn: SSL.Connection, where: int, ret: int) -> None:
            if not where & SSL.SSL_CB_HANDSHAKE_DONE or not protocol_box:
                return
            protocol = protocol_box.pop()
            try:
                gid = self.check_server(conn)
            except BaseException:
                protocol.failVerification(Failure())
                return
            if self._on_verified is not None:
                try:
                    self._on_verified(gid)
                except Exception:
                    _log.failure("while reporting a verified server identity")

        connection.set_info_callback(info_callback)
        return connection

    def check_server(self, connection: SSL.Connection) -> GID:
        """
        Apply the GENI checks to the server of a connection whose handshake is done.

        @return: the server's verified GID.
        @raise TrustError: if the server is not the one expected.
        """
        gid = _gid_from_connection(connection)
        self.roots.verify(gid, _default_clock(self._clock).seconds())
        where = f" at {self.hostname}" if self.hostname else ""
        if self.expected_urn is not None:
            if gid.urn is None or not same_urn(gid.urn, self.expected_urn):
                raise TrustError(
                    f"the server{where} is {gid.urn or gid.subject}, expected {self.expected_urn}"
                )
        if self.hostname:
            try:
                patterns = _host_patterns(gid.certificate)
                if patterns:
                    wanted: ServiceID = IPAddress_ID(self.hostname) if _is_ip(self.hostname) else DNS_ID(self.hostname)
                    verify_service_identity(patterns, [wanted], [])
            except (VerificationError, CertificateError, ValueError) as e:
                raise TrustError(f"the server certificate{where} does not name that host: {e}") from None
        return gid


def client_tls_options(
    identity: Identity | None,
    roots: TrustRoots,
    hostname: str | None = None,
    expected_urn: str | None = None,
    clock: IReactorTime | None = None,
    on_verified: Callable[[GID], object] | None = None,
) -> GeniClientTLSOptions:
    """
    Return client TLS options presenting C{identity} and checking the server against C{roots}.

    @param identity: our certificate, chain and key; C{None} to present no certificate.
    @param hostname: the server's host (sent as SNI; checked only if its certificate names hosts).
    @param expected_urn: the URN the server's certificate must carry, if known.
    @param clock: the time source for validity checks; the global reactor if C{None}.
    @param on_verified: called with the server's verified L{GID} after each handshake.
    """
    return GeniClientTLSOptions(
        _certificate_options(identity, roots),
        roots,
        hostname=hostname,
        expected_urn=expected_urn,
        clock=clock,
        on_verified=on_verified,
    )


@implementer(IPolicyForHTTPS)
class GeniTLSPolicy:
    """
    The TLS policy of a GENI client for L{twisted.web.client.Agent}.

    Each connection presents C{identity} and checks the server against the
    roots and, when C{expected_urns} names one for C{host:port}, its URN.
    The verified server GIDs are remembered per C{host:port}, so a Slice
    Manager learns a peer aggregate's URN by talking to it.

    @ivar peer_gids: C{"host:port"} to the last verified server L{GID}.
    """

    def __init__(
        self,
        identity: Identity | None,
        roots: TrustRoots,
        expected_urns: dict[str, str] | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.identity = identity
        self.roots = roots
        self.expected_urns = dict(expected_urns or {})
        self.peer_gids: dict[str, GID] = {}
        self._clock = clock
        self._options = _certificate_options(identity, roots)

    def creatorForNetloc(self, hostname: bytes, port: int) -> GeniClientTLSOptions:
        """Return the connection creator for C{hostname:port}."""
        host = hostname.decode("ascii", "replace") if isinstance(hostname, bytes) else str(hostname)
        netloc = f"{host}:{port}"

        def remember(gid: GID) -> None:
            self.peer_gids[netloc] = gid

        return GeniClientTLSOptions(
            self._options,
            self.roots,
            hostname=host,
            expected_urn=self.expected_urns.get(netloc),
            clock=self._clock,
            on_verified=remember,
        )

    def peer_gid(self, host: str, port: int) -> GID | None:
        """The last verified GID of the server at C{host:port}, or C{None}."""
        return self.peer_gids.get(f"{host}:{port}")

