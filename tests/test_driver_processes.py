"""
Gateway driver failover between real aggregate-manager processes
(C{twistd -n geniam-am}) sharing a throwaway PostgreSQL cluster: exactly
one says it drives, in its log and C{/healthz}; killed with SIGKILL, another
takes over.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody

from tests.test_store_recovery import ClusterCase

ROOT = Path(__file__).resolve().parent.parent
TWISTD = "import sys; from twisted.scripts.twistd import run; sys.exit(run())"
GAINED = "this process now drives the island's gateway"
STATUS = re.compile(r"status listener \(booking calendar\) at (http://\S+)")


class AMProcess(ProcessProtocol):
    """One twistd geniam-am child: its output, and Deferreds for lines in it."""

    def __init__(self) -> None:
        self.output = ""
        self.status_url = ""
        self.gained = 0
        self._waiters: list[tuple[str, Deferred[None]]] = []
        self.ended: Deferred[None] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data.decode("utf-8", "replace")
        self.gained = self.output.count(GAINED)
        found = STATUS.search(self.output)
        if found:
            self.status_url = found.group(1).rstrip("/")
        for text, d in list(self._waiters):
            if text in self.output:
                self._waiters.remove((text, d))
                d.callback(None)

    errReceived = outReceived

    def when_said(self, text: str) -> Deferred[None]:
        """Fire once the output holds C{text}."""
        d: Deferred[None] = Deferred()
        self._waiters.append((text, d))
        self.outReceived(b"")
        return d

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class ProcessFailoverTests(ClusterCase):
    """Three real AM processes on one database."""

    timeout = 180

    def spawn(self) -> AMProcess:
        child = AMProcess()
        data = os.path.abspath(self.mktemp())
        args = [
            sys.executable, "-c", TWISTD, "-n", "--pidfile=", "geniam-am", "--port", "0", "--data-dir", data,
            "--database", self.cluster.dsn, "--status-port", "0", "--driver-poll", "0.2s",
        ]
        transport = reactor.spawnProcess(child, sys.executable, args, env={**os.environ, "PYTHONPATH": str(ROOT)}, path=str(ROOT))

        def stop() -> Deferred[None]:
            if not child.ended.called:
                transport.signalProcess("TERM")
            return child.ended

        self.addCleanup(stop)
        child.transport = transport
        return child

    async def healthz(self, child: AMProcess) -> str:
        response = await Agent(reactor).request(b"GET", f"{child.status_url}/healthz".encode())
        return (await readBody(response)).decode()

    async def test_kill_the_driver(self) -> None:
        """Exactly one process drives; after SIGKILL to it, exactly one of the others does, and its /healthz says so."""
        children = [self.spawn() for _ in range(3)]
        for child in children:
            await child.when_said("serving AM API v3")
        [driver] = [c for c in children if c.gained]
        for child in children:
            self.assertIn("driver: yes" if child is driver else "driver: no", await self.healthz(child), child.output)
        others = [c for c in children if c is not driver]
        taken: list[Deferred[None]] = [c.when_said(GAINED) for c in others]
        driver.transport.signalProcess("KILL")
        await driver.ended
        await DeferredList(taken, fireOnOneCallback=True)
        [new] = [c for c in others if c.gained]
        self.assertEqual(new.gained, 1)
        self.assertIn("driver: yes", await self.healthz(new))
        [other] = [c for c in others if c is not new]
        self.assertIn("driver: no", await self.healthz(other))
