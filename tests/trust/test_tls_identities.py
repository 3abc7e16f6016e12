"""
Tests for L{geniam.trust.tls.CallerIdentities}: a server's callers,
identified once per TLS connection and checked once per certificate, and
TLS session resumption, pumped in memory.
"""

from __future__ import annotations

from typing import Any

from OpenSSL import SSL
from OpenSSL._util import lib as _openssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from geniam.errors import GeniCode
from geniam.timeutil import parse_time
from geniam.trust.gid import TrustError
from geniam.trust.tls import client_tls_options, server_tls_options
from tests.trust.test_gid import ALICE_URN, fixture_identity, fixture_roots
from tests.trust.test_tls import Recorder, WhoAmIServer, connect, pinned_clock

BOB_URN = "urn:publicid:IDN+geni:gpo:gcf+user+bob"


def resumed(connection: SSL.Connection) -> bool:
    """Whether a TLS connection resumed an earlier session."""
    return bool(_openssl.SSL_session_reused(connection._ssl))  # type: ignore[attr-defined]


class WhoAmIResumable(WhoAmIServer):
    """L{WhoAmIServer} that also notes whether the handshake resumed a session."""

    resumed: bool | None = None

    def handshakeCompleted(self) -> None:
        """Note the resumption, then answer."""
        self.resumed = resumed(self.transport.getHandle())  # type: ignore[union-attr]
        super().handshakeCompleted()


@implementer(IOpenSSLClientConnectionCreator)
class ResumingClient:
    """A client that offers the session of its previous connection, as a client with a session cache does."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.session: SSL.Session | None = None
        self.last: SSL.Connection | None = None

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A connection offering the remembered session."""
        connection: SSL.Connection = self._inner.clientConnectionForTLS(tlsProtocol)
        if self.session is not None:
            connection.set_session(self.session)
        self.last = connection
        return connection

    def remember(self) -> None:
        """Keep the session of the last connection for the next one."""
        assert self.last is not None
        self.session = self.last.get_session()


class CallerIdentityTests(SynchronousTestCase):
    """Who the caller is, computed once per connection and once per certificate."""

    def setUp(self) -> None:
        self.clock = pinned_clock()
        self.roots = fixture_roots()
        self.server = server_tls_options(fixture_identity("am1"), self.roots, self.clock)

    def open(self, user: str, client: Any = None) -> Any:
        """A TLS connection from C{user} (or C{client}); return the server's TLS protocol."""
        if client is None:
            client = client_tls_options(fixture_identity(user), self.roots, clock=self.clock)
        _, server_tls, _ = connect(self.server, client, Recorder(), Recorder(), self.clock)
        return server_tls

    def test_each_connection_its_own_identity(self) -> None:
        """Two connections with different certificates on one server get their own identities, however interleaved."""
        alice = self.open("alice")
        bob = self.open("bob")
        self.assertEqual(self.server.peer_gid(alice).urn, ALICE_URN)
        self.assertEqual(self.server.peer_gid(bob).urn, BOB_URN)
        self.assertEqual(self.server.peer_gid(alice).urn, ALICE_URN)
        self.assertEqual(self.server.peer_gid(bob).chain, fixture_identity("bob").gid.chain)

    def test_computed_once(self) -> None:
        """A connection's identity is computed once; a new connection with the same certificate reuses the checks."""
        first = self.open("alice")
        gid = self.server.peer_gid(first)
        self.assertIs(self.server.peer_gid(first), gid)
        self.assertIs(self.server.peer_gid(self.open("alice")), gid)
        self.assertIsNot(self.server.peer_gid(self.open("bob")), gid)

    def test_validity_checked_on_every_call(self) -> None:
        """On a kept-alive connection a certificate that has expired since the first call is refused."""
        connection = self.open("alice")
        self.assertEqual(self.server.peer_gid(connection).urn, ALICE_URN)
        self.clock.advance(parse_time("2032-06-01T00:00:00Z") - self.clock.seconds())
        e = self.assertRaises(TrustError, self.server.peer_gid, connection)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)
        e = self.assertRaises(TrustError, self.server.peer_gid, connection)
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)


class SessionResumptionTests(SynchronousTestCase):
    """The server offers TLS session resumption; a resumed session is still its client's alone."""

    def setUp(self) -> None:
        self.clock = pinned_clock()
        self.roots = fixture_roots()
        self.server = server_tls_options(fixture_identity("am1"), self.roots, self.clock)

    def exchange(self, client: Any) -> tuple[WhoAmIResumable, Recorder]:
        """Connect, let the server say whom it verified, and return both ends."""
        server_protocol, client_protocol = WhoAmIResumable(self.server), Recorder()
        connect(self.server, client, server_protocol, client_protocol, self.clock)
        return server_protocol, client_protocol

    def resuming(self, user: str) -> ResumingClient:
        """A client of C{user} that resumes its sessions."""
        return ResumingClient(client_tls_options(fixture_identity(user), self.roots, clock=self.clock))

    def with_session(self, user: str) -> ResumingClient:
        """A client of C{user} that has connected once and holds the session to resume."""
        client = self.resuming(user)
        self.exchange(client)
        client.remember()
        return client

    def test_resumed_session_is_the_same_client(self) -> None:
        """A client resuming its session is resumed and identified as the certificate of its first handshake."""
        alice = self.resuming("alice")
        server, said = self.exchange(alice)
        self.assertEqual(said.data, ALICE_URN.encode())
        self.assertIs(server.resumed, False)
        alice.remember()
        server, said = self.exchange(alice)
        self.assertIs(server.resumed, True)
        self.assertEqual(said.data, ALICE_URN.encode())

    def test_other_client_meanwhile(self) -> None:
        """Another client between a session and its resumption is itself, and the resumed one is still alice."""
        alice = self.with_session("alice")
        _, said = self.exchange(self.resuming("bob"))
        self.assertEqual(said.data, BOB_URN.encode())
        server, said = self.exchange(alice)
        self.assertIs(server.resumed, True)
        self.assertEqual(said.data, ALICE_URN.encode())

    def test_resumed_session_of_expired_certificate_refused(self) -> None:
        """Resuming skips the handshake's checks, not geniam's: a certificate expired since is refused."""
        alice = self.with_session("alice")
        self.clock.advance(parse_time("2032-06-01T00:00:00Z") - self.clock.seconds())
        server_protocol, _ = self.exchange(alice)
        self.assertIs(server_protocol.resumed, True)
        assert server_protocol.error is not None
        self.assertEqual(server_protocol.error.code, GeniCode.CREDENTIAL_EXPIRED)

    def test_sessions_need_a_client_certificate(self) -> None:
        """A client without a certificate gets no session to resume: its handshake fails before any."""
        anonymous = ResumingClient(client_tls_options(None, self.roots, clock=self.clock))
        server_protocol, said = self.exchange(anonymous)
        self.assertFalse(server_protocol.handshook)
        anonymous.remember()
        server_protocol, said = self.exchange(anonymous)
        self.assertFalse(server_protocol.handshook)
        self.assertEqual(said.data, b"")
