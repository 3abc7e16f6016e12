"""
Tests for L{geniam.tap.failfast}: every daemon that cannot start says why in
one line and exits with a non-zero status. The start-up failures run the
real C{twistd} in a child process and wait for it to exit.
"""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import sys
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet import reactor
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam import __version__
from geniam.cli.main import main as geniam_main
from geniam.client import AMClient
from geniam.store.errors import SchemaTooNew, StoreError
from geniam.tap import am as am_tap
from geniam.tap.failfast import EXIT_CONFIG, EXIT_SOFTWARE, EXIT_UNAVAILABLE, StartupGuard, explain
from geniam.trust.domain import TrustDomain
from geniam.trust.identity import Identity
from tests.fixturepaths import REPO_ROOT

ROOT = REPO_ROOT
FIXTURES = ROOT / "tests" / "fixtures" / "gcf"
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"


class ProcessCase(TestCase):
    """Runs the real twistd with geniam's plugins in a child process."""

    async def twistd(self, *args: str) -> tuple[int, str]:
        """Run C{twistd -n ARGS} in a fresh folder; return its exit status and everything it wrote."""
        folder = Path(self.mktemp())
        folder.mkdir()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        out, err, status = await getProcessOutputAndValue(
            sys.executable, ["-c", TWISTD, "-n", "--pidfile=", *args], env=env, path=str(folder)
        )
        return status, (out + err).decode("utf-8", "replace")

    def taken_port(self) -> int:
        """A loopback port this test listens on."""
        port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return int(port.getHost().port)

    def data(self) -> str:
        return os.path.abspath(self.mktemp())

    def assert_one_line(self, output: str, status: int, expected_status: int, *fragments: str) -> None:
        """The process exited with C{expected_status} and said why on one line holding every fragment, without a traceback."""
        self.assertEqual(status, expected_status, output)
        lines = [line for line in output.splitlines() if "could not start" in line or "cannot start" in line]
        self.assertEqual(len(lines), 1, output)
        for fragment in fragments:
            self.assertIn(fragment, lines[0])
        self.assertNotIn("Traceback", output)


class PortTakenTests(ProcessCase):
    """A port already in use ends each daemon with EX_UNAVAILABLE."""

    async def test_aggregate_manager(self) -> None:
        """twistd geniam-am on a taken port logs why and exits 69."""
        port = self.taken_port()
        status, output = await self.twistd("geniam-am", "--port", str(port), "--data-dir", self.data())
        self.assert_one_line(output, status, EXIT_UNAVAILABLE, "geniam-am could not start", f"127.0.0.1:{port}", "in use")

    async def test_slice_manager(self) -> None:
        """twistd geniam-sm on a taken port logs why and exits 69."""
        port = self.taken_port()
        status, output = await self.twistd(
            "geniam-sm", "--port", str(port), "--data-dir", self.data(), "--aggregate", "https://127.0.0.1:9/"
        )
        self.assert_one_line(output, status, EXIT_UNAVAILABLE, "geniam-sm could not start", f"127.0.0.1:{port}")

    async def test_agent(self) -> None:
        """twistd geniam-agent on a taken port logs why and exits 69 (its listener fails synchronously)."""
        port = self.taken_port()
        status, output = await self.twistd("geniam-agent", "--port", str(port), "--data-dir", self.data())
        self.assert_one_line(output, status, EXIT_UNAVAILABLE, "geniam-agent could not start", f"127.0.0.1:{port}")


class ConfigurationTests(ProcessCase):
    """Files that cannot be used end the daemon with EX_CONFIG before it listens."""

    def bad_pem(self) -> str:
        path = os.path.abspath(self.mktemp())
        Path(path).write_text("not a certificate\n")
        return path

    def roots(self) -> str:
        roots = os.path.abspath(self.mktemp())
        os.makedirs(roots)
        shutil.copy(FIXTURES / "ch-cert.pem", roots)
        return roots

    async def test_unreadable_certificate(self) -> None:
        """A certificate that is no certificate is named, and the AM exits 78."""
        pem = self.bad_pem()
        status, output = await self.twistd(
            "geniam-am", "--port", "0", "--data-dir", self.data(),
            "--certificate", pem, "--private-key", pem, "--trust-roots", self.roots(),
        )  # fmt: skip
        self.assert_one_line(output, status, EXIT_CONFIG, "geniam-am: cannot start", pem)

    async def test_empty_trust_roots(self) -> None:
        """Trust roots without a certificate end the slice manager with 78."""
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        status, output = await self.twistd(
            "geniam-sm", "--port", "0", "--data-dir", self.data(), "--trust-roots", empty, "--aggregate", "https://a.example/"
        )
        self.assert_one_line(output, status, EXIT_CONFIG, "geniam-sm: cannot start", "no certificates")

    async def test_agent_trust_roots(self) -> None:
        """Unusable trust roots end the agent with 78."""
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        status, output = await self.twistd("geniam-agent", "--port", "0", "--data-dir", self.data(), "--trust-roots", empty)
        self.assert_one_line(output, status, EXIT_CONFIG, "geniam-agent: cannot start", "trust roots")

    async def test_bad_configuration_file(self) -> None:
        """A configuration file with a bad value is refused by twistd's option parsing (status 1)."""
        config = Path(self.mktemp()).resolve()
        config.write_text('port = "eighty"\n')
        status, output = await self.twistd("geniam-am", "--config", str(config))
        self.assertEqual(status, 1, output)
        self.assertIn("port", output.splitlines()[-1])

    async def test_version(self) -> None:
        """twistd geniam-am --version prints geniam's version, not Twisted's."""
        status, output = await self.twistd("geniam-am", "--version")
        self.assertEqual((status, output.strip()), (0, f"geniam {__version__}"))


class DatabaseTests(ProcessCase):
    """A database the AM cannot use ends it."""

    async def test_unreachable(self) -> None:
        """A PostgreSQL server that is not there ends the AM with 69, naming the connection failure."""
        status, output = await self.twistd(
            "geniam-am", "--port", "0", "--data-dir", self.data(), "--database", f"host={self.data()} dbname=none"
        )
        self.assert_one_line(output, status, EXIT_UNAVAILABLE, "geniam-am could not start", "cannot connect to the database")

    async def test_newer_schema(self) -> None:
        """An SQLite file written by a newer version ends the AM with 78."""
        path = os.path.abspath(self.mktemp())
        connection = sqlite3.connect(path)
        connection.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        connection.execute("INSERT INTO schema_version VALUES (99)")
        connection.commit()
        connection.close()
        status, output = await self.twistd("geniam-am", "--port", "0", "--data-dir", self.data(), "--database", path)
        self.assert_one_line(output, status, EXIT_CONFIG, "geniam-am could not start", "schema version 99")


class _Failing(Service):
    """A service whose start fails later, through C{when_started}."""

    def __init__(self) -> None:
        from twisted.internet.defer import Deferred

        self.started: Deferred[Any] = Deferred()

    def when_started(self) -> Any:
        return self.started


class GuardTests(SynchronousTestCase):
    """The guard's reactions, without a process."""

    def guard(self, service: Any) -> tuple[StartupGuard, MemoryReactor, list[int]]:
        statuses: list[int] = []
        memory = MemoryReactor()
        self.settled: list[bool] = []
        guard = StartupGuard(service, "geniam-test", memory, statuses.append, settle=lambda: self.settled.append(True))
        return guard, memory, statuses

    def test_late_failure_stops_the_reactor(self) -> None:
        """A start failing after startService sets the status and stops the reactor once it runs."""
        service = _Failing()
        guard, memory, statuses = self.guard(service)
        guard.startService()
        self.assertEqual(statuses, [])
        service.started.errback(StoreError("cannot connect to the database: refused"))
        self.assertEqual((statuses, guard.exit_status, self.settled), ([EXIT_UNAVAILABLE], EXIT_UNAVAILABLE, []))
        [(stop, _, _)] = memory.whenRunningHooks
        memory.running = True
        stop()
        self.assertTrue(memory.hasStopped)

    def test_success_leaves_it_running(self) -> None:
        """A start that succeeds sets no status, and the heap is settled once it has."""
        service = _Failing()
        guard, memory, statuses = self.guard(service)
        guard.startService()
        self.assertEqual(self.settled, [])
        service.started.callback(service)
        self.assertEqual((statuses, memory.whenRunningHooks, guard.exit_status), ([], [], None))
        self.assertEqual(self.settled, [True])

    def test_unexpected_error(self) -> None:
        """An unexpected error is logged with its traceback and gives EX_SOFTWARE."""
        service = _Failing()
        guard, _, statuses = self.guard(service)
        guard.startService()
        service.started.errback(ZeroDivisionError())
        self.assertEqual(statuses, [EXIT_SOFTWARE])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_explain(self) -> None:
        """Each known failure has its status and a reason without Python internals."""
        taken = CannotListenError("127.0.0.1", 8001, OSError(98, "Address already in use"))
        self.assertEqual(explain(taken), (EXIT_UNAVAILABLE, "cannot listen on 127.0.0.1:8001: Address already in use"))
        self.assertEqual(explain(SchemaTooNew(3, 1))[0], EXIT_CONFIG)  # type: ignore[index]
        self.assertEqual(explain(FileNotFoundError(2, "No such file or directory", "/x.pem")), (EXIT_CONFIG, "/x.pem: No such file or directory"))
        self.assertIsNone(explain(Failure(ZeroDivisionError()).value))


class UsersHintTests(TestCase):
    """The hint an AM prints at first start works when followed."""

    async def test_hint_with_trust_roots_of_a_domain(self) -> None:
        """
        With C{--trust-roots DOMAIN/roots}, the AM says to make users in
        that domain, and a user made as it says is served.
        """
        domain = TrustDomain.create(os.path.abspath(self.mktemp()))
        options = am_tap.Options()
        options.parseOptions(["--port", "0", "--data-dir", self.mktemp(), "--trust-roots", str(domain.roots_dir)])
        printed = io.StringIO()
        self.patch(sys, "stdout", printed)
        service = am_tap.build(options, reactor)
        hint = printed.getvalue().split("make users with '", 1)[1].split("'", 1)[0]
        command = hint.replace("NAME", "bob").split()
        self.assertEqual(command[:3], ["geniam", "authority", "user"])
        self.assertEqual(geniam_main(command[1:]), 0)
        service.startService()
        self.addCleanup(service.stopService)
        await service.when_started()
        bob = Identity.from_files(domain.cert_path("users", "bob"), domain.key_path("users", "bob"))
        client = AMClient(reactor, service.url, bob, domain.roots())
        self.addCleanup(client.close)
        version = await client.get_version()
        self.assertEqual(version["code"]["geni_code"], 0)

    def test_hint_with_foreign_roots(self) -> None:
        """With trust roots of no development domain, the hint names the roots, not the AM's own domain."""
        roots = os.path.abspath(self.mktemp())
        os.makedirs(roots)
        shutil.copy(FIXTURES / "ch-cert.pem", roots)
        options = am_tap.Options()
        options.parseOptions(["--port", "0", "--data-dir", self.mktemp(), "--trust-roots", roots])
        printed = io.StringIO()
        self.patch(sys, "stdout", printed)
        am_tap.build(options, reactor)
        self.assertNotIn("geniam authority user", printed.getvalue())
        self.assertIn(f"issued by an authority in {roots}", printed.getvalue())
