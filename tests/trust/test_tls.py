"""
Tests for L{geniam.trust.tls}: mutual TLS with GENI identities, in memory and on loopback.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import SSL4ClientEndpoint, SSL4ServerEndpoint
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator, IOpenSSLServerConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import IOPump, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool, ResponseNeverReceived, readBody
from twisted.web.iweb import IPolicyForHTTPS
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from zope.interface import implementer
from zope.interface.verify import verifyObject

from geniam.errors import GeniCode
from geniam.timeutil import parse_time
from geniam.trust.gid import GID, TrustError, TrustRoots
from geniam.trust.identity import Identity
from geniam.trust.tls import (
    GeniTLSPolicy,
    client_tls_options,
    peer_certificate_gid,
    peer_gid,
    server_tls_options,
)
from tests.trust.test_gid import ALICE_URN, NOW, fixture_identity, fixture_roots, issue, shared_authority

AM1_URN = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"
AM2_URN = "urn:publicid:IDN+geni:gpo:gcf:am2+authority+am"


def pinned_clock(when: float = NOW) -> Clock:
    """A clock showing C{when}."""
    clock = Clock()
    clock.advance(when)
    return clock


@implementer(IHandshakeListener)
class Recorder(Protocol):
    """Records the handshake, the data and how the connection ended."""

    def __init__(self) -> None:
        self.handshook = False
        self.data = b""
        self.lost: Failure | None = None
        self.done: defer.Deferred[Recorder] = defer.Deferred()

    def handshakeCompleted(self) -> None:
        """Note that the TLS handshake finished."""
        self.handshook = True

    def dataReceived(self, data: bytes) -> None:
        """Keep what arrives."""
        self.data += data

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        """Fire C{done}."""
        self.lost = reason
        self.done.callback(self)


class WhoAmIServer(Recorder):
    """After the handshake, tells the client the URN the server verified for it, then hangs up."""

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.options = options
        self.error: TrustError | None = None

    def handshakeCompleted(self) -> None:
        """Verify the client and answer with its URN."""
        super().handshakeCompleted()
        try:
            gid = self.options.peer_gid(self.transport)
        except TrustError as e:
            self.error = e
            self.transport.write(b"refused: " + e.output.encode())  # type: ignore[union-attr]
        else:
            self.transport.write((gid.urn or "").encode())  # type: ignore[union-attr]
        self.transport.loseConnection()  # type: ignore[union-attr]


def connect(
    server_options: Any, client_options: Any, server_protocol: Protocol, client_protocol: Protocol, clock: Clock
) -> tuple[Any, Any, IOPump]:
    """
    Connect two protocols over TLS in memory and run the exchange; return
    the client's and the server's TLS protocols and the pump.
    """
    server_factory = TLSMemoryBIOFactory(
        server_options, False, Factory.forProtocol(lambda: server_protocol), clock=clock
    )
    client_factory = TLSMemoryBIOFactory(
        client_options, True, Factory.forProtocol(lambda: client_protocol), clock=clock
    )
    client_tls, server_tls, pump = connectedServerAndClient(
        lambda: server_factory.buildProtocol(None),
        lambda: client_factory.buildProtocol(None),
        greet=False,
        clock=clock,
    )
    pump.flush()
    return client_tls, server_tls, pump


def in_memory(
    server_options: Any, client_options: Any, clock: Clock
) -> tuple[WhoAmIServer, Recorder, Any, Any, IOPump]:
    """Connect a L{WhoAmIServer} and a L{Recorder} over TLS in memory and run the exchange."""
    server_protocol = WhoAmIServer(server_options)
    client_protocol = Recorder()
    client_tls, server_tls, pump = connect(server_options, client_options, server_protocol, client_protocol, clock)
    return server_protocol, client_protocol, server_tls, client_tls, pump


class InMemoryTLSTests(SynchronousTestCase):
    """Handshakes between GENI identities, pumped in memory."""

    def setUp(self) -> None:
        self.clock = pinned_clock()
        self.roots = fixture_roots()
        self.am1 = fixture_identity("am1")
        self.server = server_tls_options(self.am1, self.roots, self.clock)

    def test_interfaces(self) -> None:
        """The options and the policy provide the Twisted interfaces they are used through."""
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, self.server))
        client = client_tls_options(fixture_identity("alice"), self.roots, clock=self.clock)
        self.assertTrue(verifyObject(IOpenSSLClientConnectionCreator, client))
        self.assertTrue(verifyObject(IPolicyForHTTPS, GeniTLSPolicy(None, self.roots)))

    def test_fixture_user_accepted(self) -> None:
        """alice's chained fixture certificate is accepted and the server learns her URN."""
        learned: list[GID] = []
        client = client_tls_options(
            fixture_identity("alice"), self.roots, expected_urn=AM1_URN, clock=self.clock,
            on_verified=learned.append,
        )
        server_protocol, client_protocol, server_tls, client_tls, _ = in_memory(self.server, client, self.clock)
        self.assertEqual(client_protocol.data, ALICE_URN.encode())
        self.assertTrue(server_protocol.handshook)
        self.assertEqual([g.urn for g in learned], [AM1_URN])

    def test_peer_gid_both_ways(self) -> None:
        """peer_gid gives the client's GID (with the chain it sent) on the server and the server's on the client."""
        client = client_tls_options(fixture_identity("bob"), self.roots, clock=self.clock)
        server_protocol = Recorder()
        client_protocol = Recorder()
        client_tls, server_tls, _ = connect(self.server, client, server_protocol, client_protocol, self.clock)
        self.assertTrue(server_protocol.handshook and client_protocol.handshook)
        bob = self.server.peer_gid(server_tls)
        self.assertEqual(bob.urn, "urn:publicid:IDN+geni:gpo:gcf+user+bob")
        self.assertEqual(bob.chain, fixture_identity("bob").gid.chain)
        self.assertEqual(peer_gid(server_protocol, self.roots, self.clock), bob)
        server_seen = peer_gid(client_tls, self.roots, self.clock)
        self.assertEqual(server_seen.urn, AM1_URN)
        self.assertEqual(server_seen.chain, self.am1.gid.chain)

    def test_no_certificate_refused(self) -> None:
        """A client without a certificate never completes the handshake on the server."""
        client = client_tls_options(None, self.roots, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(self.server, client, self.clock)
        self.assertFalse(server_protocol.handshook)
        self.assertEqual(client_protocol.data, b"")
        self.assertIsNotNone(server_protocol.lost)
        self.assertIsNotNone(client_protocol.lost)

    def test_untrusted_ca_refused(self) -> None:
        """A certificate from a CA outside the roots, even one with the right names, is refused."""
        impostor = shared_authority("geni:gpo:gcf", key_index=4)
        mallory = issue(impostor, ALICE_URN)
        client = client_tls_options(mallory, self.roots, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(self.server, client, self.clock)
        self.assertFalse(server_protocol.handshook)
        self.assertEqual(client_protocol.data, b"")

    def test_namespace_checked_after_handshake(self) -> None:
        """
        A client chained to a trusted root outside its namespace passes OpenSSL
        but peer_gid refuses it with the namespace reason.
        """
        other = shared_authority("geni:other")
        roots = TrustRoots.from_certificates([*self.roots.certificates, other.gid.certificate])
        eve = issue(other, "urn:publicid:IDN+geni:gpo:gcf+user+eve")
        server = server_tls_options(self.am1, roots, self.clock)
        client = client_tls_options(eve, roots, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(server, client, self.clock)
        self.assertTrue(server_protocol.handshook)
        assert server_protocol.error is not None
        self.assertEqual(server_protocol.error.code, GeniCode.CREDENTIAL_SIGNER_UNTRUSTED)
        self.assertIn("no namespace authority", server_protocol.error.output)
        self.assertTrue(client_protocol.data.startswith(b"refused: "))

    def test_validity_at_reactor_time(self) -> None:
        """Both ends judge validity windows at their clock's time, not the wall clock's."""
        late = pinned_clock(parse_time("2032-06-01T00:00:00Z"))
        client = client_tls_options(fixture_identity("alice"), self.roots, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(
            server_tls_options(self.am1, self.roots, late), client, self.clock
        )
        self.assertFalse(server_protocol.handshook)
        self.assertEqual(client_protocol.data, b"")
        client = client_tls_options(fixture_identity("alice"), self.roots, clock=late)
        server_protocol, client_protocol, *_ = in_memory(self.server, client, self.clock)
        self.assertEqual(client_protocol.data, b"")

    def test_peer_gid_rechecks_time(self) -> None:
        """peer_gid applies the clock's time when called, e.g. on a long-lived connection."""
        client = client_tls_options(fixture_identity("alice"), self.roots, clock=self.clock)
        _, server_tls, _ = connect(self.server, client, Recorder(), Recorder(), self.clock)
        self.assertEqual(self.server.peer_gid(server_tls).urn, ALICE_URN)
        e = self.assertRaises(TrustError, peer_gid, server_tls, self.roots, pinned_clock(parse_time("2032-06-01T00:00:00Z")))
        self.assertEqual(e.code, GeniCode.CREDENTIAL_EXPIRED)

    def test_client_checks_server_urn(self) -> None:
        """A client expecting am2 aborts when am1 answers, with a TrustError naming both."""
        client = client_tls_options(fixture_identity("alice"), self.roots, expected_urn=AM2_URN, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(self.server, client, self.clock)
        self.assertEqual(client_protocol.data, b"")
        assert client_protocol.lost is not None
        error = client_protocol.lost.value
        self.assertIsInstance(error, TrustError)
        self.assertIn(AM1_URN, error.output)
        self.assertIn(AM2_URN, error.output)

    def test_client_refuses_untrusted_server(self) -> None:
        """A client whose roots did not issue the server's certificate refuses it."""
        roots = TrustRoots.from_certificates([shared_authority("geni:other").gid])
        client = client_tls_options(fixture_identity("alice"), roots, clock=self.clock)
        server_protocol, client_protocol, *_ = in_memory(self.server, client, self.clock)
        self.assertEqual(client_protocol.data, b"")
        self.assertFalse(client_protocol.handshook)

    def test_hostname_checked_only_when_named(self) -> None:
        """A server certificate naming hosts must name ours; one naming none is judged by URN alone."""
        ca = shared_authority()
        roots = TrustRoots.from_certificates([ca.gid])
        user = issue(ca, "urn:publicid:IDN+geni:gpo:gcf+user+carol", key_index=2)
        named = issue(ca, "urn:publicid:IDN+geni:gpo:gcf:am9+authority+am", is_authority=True,
                      dns_names=["am9.example.org", "127.0.0.1"])
        unnamed = issue(ca, "urn:publicid:IDN+geni:gpo:gcf:am8+authority+am", is_authority=True, key_index=3)
        cases = [
            (named, "am9.example.org", True),
            (named, "127.0.0.1", True),
            (named, "elsewhere.example.org", False),
            (named, "10.0.0.1", False),
            (unnamed, "anything.example.org", True),
        ]
        for server_identity, host, accepted in cases:
            client = client_tls_options(user, roots, hostname=host, clock=self.clock)
            server = server_tls_options(server_identity, roots, self.clock)
            _, client_protocol, *_ = in_memory(server, client, self.clock)
            self.assertEqual(client_protocol.data == user.urn.encode(), accepted, (host, client_protocol.data))  # type: ignore[union-attr]
            if not accepted:
                assert client_protocol.lost is not None
                self.assertIn("does not name that host", client_protocol.lost.value.output)

    def test_policy_learns_server(self) -> None:
        """GeniTLSPolicy checks the expected URN per host:port and remembers the server's GID."""
        policy = GeniTLSPolicy(fixture_identity("alice"), self.roots, {"am1.test:443": AM1_URN}, clock=self.clock)
        creator = policy.creatorForNetloc(b"am1.test", 443)
        self.assertEqual(creator.expected_urn, AM1_URN)
        self.assertIsNone(policy.peer_gid("am1.test", 443))
        _, client_protocol, *_ = in_memory(self.server, creator, self.clock)
        self.assertEqual(client_protocol.data, ALICE_URN.encode())
        self.assertEqual(policy.peer_gid("am1.test", 443).urn, AM1_URN)  # type: ignore[union-attr]
        wrong = policy.creatorForNetloc(b"am2.test", 443)
        policy.expected_urns["am2.test:443"] = AM2_URN
        wrong = policy.creatorForNetloc(b"am2.test", 443)
        _, client_protocol, *_ = in_memory(self.server, wrong, self.clock)
        self.assertEqual(client_protocol.data, b"")
        self.assertIsNone(policy.peer_gid("am2.test", 443))

    def test_not_tls(self) -> None:
        """peer_gid on something that is not a TLS connection raises TrustError."""
        e = self.assertRaises(TrustError, peer_gid, object(), self.roots, self.clock)
        self.assertIn("not a TLS connection", e.output)
        self.assertRaises(TrustError, peer_certificate_gid, Protocol())


class WhoAmI(Resource):
    """Answers with the URN of the verified caller."""

    isLeaf = True

    def __init__(self, options: Any) -> None:
        super().__init__()
        self.options = options

    def render_GET(self, request: Request) -> bytes:
        """Return the caller's URN."""
        return (self.options.peer_gid(request).urn or "").encode()


class LoopbackTLSTests(TestCase):
    """Real TLS over 127.0.0.1 with the gcf fixtures."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.clock = pinned_clock()
        self.roots = fixture_roots()
        self.server = server_tls_options(fixture_identity("am1"), self.roots, self.clock)

    async def listen_web(self) -> int:
        """Serve L{WhoAmI} on a fresh loopback port and return it."""
        endpoint = SSL4ServerEndpoint(self.reactor, 0, self.server, interface="127.0.0.1")  # type: ignore[arg-type]
        port = await endpoint.listen(Site(WhoAmI(self.server)))
        self.addCleanup(port.stopListening)
        return port.getHost().port  # type: ignore[no-any-return]

    def agent(self, policy: GeniTLSPolicy) -> Agent:
        """An Agent with a non-persistent pool."""
        return Agent(self.reactor, policy, pool=HTTPConnectionPool(self.reactor, persistent=False))  # type: ignore[arg-type]

    async def test_alice_accepted(self) -> None:
        """omni-style alice (chained certificate) gets through; the server sees her URN; the client learns am1's."""
        port = await self.listen_web()
        netloc = f"127.0.0.1:{port}"
        policy = GeniTLSPolicy(fixture_identity("alice"), self.roots, {netloc: AM1_URN}, clock=self.clock)
        response = await self.agent(policy).request(b"GET", f"https://{netloc}/".encode())
        self.assertEqual(await readBody(response), ALICE_URN.encode())
        self.assertEqual(policy.peer_gid("127.0.0.1", port).urn, AM1_URN)  # type: ignore[union-attr]

    async def test_server_urn_mismatch(self) -> None:
        """A client expecting am2 refuses am1; the request fails with the TrustError."""
        port = await self.listen_web()
        netloc = f"127.0.0.1:{port}"
        policy = GeniTLSPolicy(fixture_identity("alice"), self.roots, {netloc: AM2_URN}, clock=self.clock)
        failure: Any = await self.assertFailure(
            self.agent(policy).request(b"GET", f"https://{netloc}/".encode()), ResponseNeverReceived
        )
        reasons = [f.value for f in failure.reasons]
        self.assertTrue(any(isinstance(r, TrustError) and AM1_URN in r.output for r in reasons), reasons)
        self.assertIsNone(policy.peer_gid("127.0.0.1", port))

    async def connect_raw(self, identity: Identity | None) -> Recorder:
        """Connect a raw client to a L{WhoAmIServer} on loopback and wait for the end."""
        endpoint = SSL4ServerEndpoint(self.reactor, 0, self.server, interface="127.0.0.1")  # type: ignore[arg-type]
        servers: list[WhoAmIServer] = []

        def build() -> WhoAmIServer:
            servers.append(WhoAmIServer(self.server))
            return servers[-1]

        port = await endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        options = client_tls_options(identity, self.roots, clock=self.clock)
        client = SSL4ClientEndpoint(self.reactor, "127.0.0.1", port.getHost().port, options)  # type: ignore[arg-type]
        recorder = Recorder()
        await client.connect(Factory.forProtocol(lambda: recorder))
        await recorder.done
        if servers:
            await servers[0].done
        return recorder

    async def test_bob_accepted_raw(self) -> None:
        """A raw TLS protocol (as the PB agent uses) also learns the client's URN."""
        recorder = await self.connect_raw(fixture_identity("bob"))
        self.assertEqual(recorder.data, b"urn:publicid:IDN+geni:gpo:gcf+user+bob")

    async def test_no_certificate_refused(self) -> None:
        """Without a client certificate no application data is exchanged."""
        recorder = await self.connect_raw(None)
        self.assertEqual(recorder.data, b"")
        self.assertIsNotNone(recorder.lost)

    async def test_untrusted_ca_refused(self) -> None:
        """A client certificate from an untrusted CA is refused."""
        impostor = shared_authority("geni:gpo:gcf", key_index=4)
        recorder = await self.connect_raw(issue(impostor, ALICE_URN))
        self.assertEqual(recorder.data, b"")
