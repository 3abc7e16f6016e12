"""
C{--trust-roots} as a PEM file (one certificate or several) as well as a
folder: the loader, and every role and command over real TLS on
127.0.0.1 with the GENI reference clearinghouse's certificates.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

from cryptography import x509
from twisted.application.internet import StreamServerEndpointService
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.agent.options import AgentOptions
from geniam.tap.agent import make_agent_service
from geniam.cli import agent as agent_cli
from geniam.cli import credential as credential_cli
from geniam.client import AMClient, value_of
from geniam.errors import GeniCode
from geniam.tap import am as am_tap
from geniam.tap import sm as sm_tap
from geniam.trust.certs import make_authority
from geniam.trust.gid import TrustError, TrustRoots
from geniam.trust.identity import Identity
from tests.fixturepaths import REPO_ROOT, GCF

AGENT_URN = "urn:publicid:IDN+geni:gpo:gcf:agent+authority+am"
AM_URN = "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"


def write_bundle(folder: Path, extra: int = 0) -> Path:
    """A PEM file holding C{extra} unrelated authorities, then the clearinghouse's root."""
    now = time.time()
    others = [make_authority(f"other{n}:example", now=now - 60, key_size=1024).gid.to_pem().decode() for n in range(extra)]
    path = folder / "roots.pem"
    path.write_text("".join(others) + (GCF / "ch-cert.pem").read_text())
    return path


class LoadingTests(SynchronousTestCase):
    """TrustRoots.from_path reads a file or a folder."""

    def test_single_file(self) -> None:
        """A file with one certificate trusts exactly it."""
        roots = TrustRoots.from_path(GCF / "ch-cert.pem")
        self.assertEqual(len(roots), 1)
        self.assertIn(x509.load_pem_x509_certificate((GCF / "ch-cert.pem").read_bytes()), roots)
        self.assertNotIn(x509.load_pem_x509_certificate((GCF / "alice-cert.pem").read_bytes()), roots)

    def test_bundle_file(self) -> None:
        """A file with many certificates (more than one PEM chain may hold) trusts them all."""
        folder = Path(self.mktemp())
        folder.mkdir()
        roots = TrustRoots.from_path(write_bundle(folder, extra=20))
        self.assertEqual(len(roots), 21)

    def test_folder(self) -> None:
        """A folder still works: every PEM file in it."""
        folder = Path(self.mktemp())
        folder.mkdir()
        write_bundle(folder, extra=1)
        (folder / "notes.txt").write_text("not a certificate")
        self.assertEqual(len(TrustRoots.from_path(folder)), 2)

    def test_bad_files(self) -> None:
        """A missing file, a file with no certificate and a malformed one are refused by name."""
        folder = Path(self.mktemp())
        folder.mkdir()
        empty = folder / "key.pem"
        empty.write_bytes((GCF / "alice-key.pem").read_bytes())
        broken = folder / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        for path, code, words in (
            (folder / "missing.pem", GeniCode.ERROR, "cannot read"),
            (empty, GeniCode.ERROR, "no certificates"),
            (broken, GeniCode.CREDENTIAL_INVALID, "broken.pem"),
        ):
            with self.assertRaises(TrustError) as cm:
                TrustRoots.from_path(path)
            self.assertEqual(cm.exception.code, code)
            self.assertIn(words, cm.exception.output)

    def test_options_take_a_file(self) -> None:
        """Every role's options take a file, and refuse a path that does not exist."""
        for options in (am_tap.Options(), sm_tap.Options(), AgentOptions()):
            extra = ["--aggregate", "https://127.0.0.1:1/"] if isinstance(options, sm_tap.Options) else []
            options.parseOptions(["--trust-roots", str(GCF / "ch-cert.pem"), *extra])
            with self.assertRaises(usage.UsageError) as cm:
                type(options)().parseOptions(["--trust-roots", "/nonexistent/roots.pem", *extra])
            self.assertIn("no such file or folder", str(cm.exception))


class RolesWithFileTests(TestCase):
    """An agent, an aggregate manager and a slice manager, each given its roots as one PEM file."""

    async def test_every_role_and_command(self) -> None:
        """The AM logs in to the agent, the SM reaches the AM, and geniam call, agent state and credential verify work."""
        folder = Path(self.mktemp())
        folder.mkdir()
        bundle = str(write_bundle(folder, extra=2))

        def identity(name: str) -> list[str]:
            return ["--certificate", str(GCF / f"{name}-cert.pem"), "--private-key", str(GCF / f"{name}-key.pem")]

        common = ["--port", "0", "--interface", "127.0.0.1", "--trust-roots", bundle]
        agent_options = AgentOptions()
        agent_options.parseOptions(
            [*common, "--data-dir", str(folder / "agent"), *identity("agent"),
             "--allow", "urn:publicid:IDN+geni:gpo:gcf:am1+authority+am"]
        )
        agent = make_agent_service(agent_options, reactor)
        agent.startService()
        self.addCleanup(agent.stopService)
        listener = next(s for s in agent if isinstance(s, StreamServerEndpointService))
        agent_port = (await listener._waitingForPort).getHost().port

        am_options = am_tap.Options()
        am_options.parseOptions(
            [*common, "--data-dir", str(folder / "am"), *identity("am1"),
             "--agent", f"127.0.0.1:{agent_port}", "--agent-urn", AGENT_URN]
        )
        am = am_tap.build(am_options, reactor)
        am.startService()
        self.addCleanup(am.stopService)
        await am.when_started()
        connected: Deferred[None] = am.gateway.when_connected()
        connected.addTimeout(30, reactor)
        await connected

        sm_options = sm_tap.Options()
        sm_options.parseOptions([*common, "--data-dir", str(folder / "sm"), *identity("am2"), "--aggregate", am.url])
        sm = sm_tap.build(sm_options, reactor)
        sm.startService()
        self.addCleanup(sm.stopService)
        await sm.when_started()
        alice = AMClient(reactor, sm.url, Identity.from_files(GCF / "alice-cert.pem", GCF / "alice-key.pem"),
                         TrustRoots.from_path(bundle))
        self.addCleanup(alice.close)
        peers = value_of(await alice.get_version())["peers"]
        self.assertEqual(peers, {AM_URN: am.url})

        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
        out, err, code = await getProcessOutputAndValue(
            sys.executable,
            ["-m", "geniam", "call", am.url, "ListResources", "--credential", str(GCF / "alice-usercred.xml"),
             "--trust-roots", bundle, *identity("alice")],
            env=env,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"<rspec", out)

        state_options = agent_cli.StateOptions()
        state_options.parseOptions(["--agent", f"127.0.0.1:{agent_port}", "--trust-roots", bundle, *identity("am1")])
        printed, errors = io.StringIO(), io.StringIO()
        self.assertEqual(await agent_cli.run_state(reactor, state_options, printed, errors), 0, errors.getvalue())
        self.assertIn(AGENT_URN, printed.getvalue())

        printed = io.StringIO()
        status = credential_cli.main(
            ["verify", "--trust-roots", bundle, "--caller", str(GCF / "bob-cert.pem"),
             str(GCF / "bob-delegated-fixture-slicecred.xml")],
            out=printed, err=io.StringIO(),
        )
        self.assertEqual(status, 0, printed.getvalue())

    def test_unreadable_roots_file(self) -> None:
        """geniam credential verify with a file holding no certificate exits 2 and says so."""
        errors = io.StringIO()
        status = credential_cli.main(
            ["verify", "--trust-roots", str(GCF / "alice-key.pem"), "--caller", str(GCF / "alice-cert.pem"),
             str(GCF / "alice-usercred.xml")],
            out=io.StringIO(), err=errors,
        )
        self.assertEqual(status, 2)
        self.assertIn("no certificates in trust roots file", errors.getvalue())
