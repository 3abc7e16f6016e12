"""
Aggregate manager throughput over TLS with client certificates.

Starts an aggregate manager in a child process (a development trust
domain in a temporary folder), then calls GetVersion and ListResources
from this process: sequentially and with 8 concurrent clients, over
kept-alive connections and with a new TLS connection per call. Prints
calls per second. Then measures Allocate latency through the island
resource manager with many existing bookings (see bench_allocate.py).

  python bench/bench_am.py [--short]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SERVE = r"""
import sys
from pathlib import Path
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from geniam.loopback import LoopbackFederation

async def main():
    fed = LoopbackFederation(Path(sys.argv[1]), reactor, aggregate_names=("am1",), user_names=("alice",))
    await fed.start()
    reactor.addSystemEventTrigger("before", "shutdown", lambda: Deferred.fromCoroutine(fed.stop()))
    print(fed.url("am1"), flush=True)

reactor.callWhenRunning(lambda: Deferred.fromCoroutine(main()))
reactor.run()
"""


async def measure(reactor, url, folder, method, calls, concurrency, keep_alive):
    from twisted.internet.defer import DeferredList
    from twisted.web.client import HTTPConnectionPool

    from geniam.client import AMClient, value_of
    from geniam.loopback import LoopbackFederation

    fed = LoopbackFederation(Path(folder), reactor, aggregate_names=("am1",), user_names=("alice",))
    cred = fed.user_credential("alice")
    pool = HTTPConnectionPool(reactor, persistent=keep_alive)
    pool.maxPersistentPerHost = concurrency
    client = AMClient(reactor, url, fed.domain.user("alice"), fed.domain.roots(), (cred,), pool=pool)
    call = client.get_version if method == "GetVersion" else client.list_resources
    value_of(await call())
    remaining = [calls]

    async def worker():
        while remaining[0] > 0:
            remaining[0] -= 1
            value_of(await call())

    from twisted.internet.defer import Deferred

    started = time.perf_counter()
    await DeferredList([Deferred.fromCoroutine(worker()) for _ in range(concurrency)], fireOnOneErrback=True)
    elapsed = time.perf_counter() - started
    await pool.closeCachedConnections()
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", action="store_true", help="few calls, for CI")
    args = parser.parse_args()
    calls = 60 if args.short else 600
    folder = tempfile.mkdtemp(prefix="geniam-bench-am-")
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    server = subprocess.Popen([sys.executable, "-c", SERVE, folder], stdout=subprocess.PIPE, text=True, env=env)
    try:
        url = server.stdout.readline().strip()
        print(f"aggregate manager at {url} (separate process); {calls} calls per figure")
        print("reference gcf-am on this machine: about 180 GetVersion/s and 10 ListResources/s")
        print(f"{'method':<14} {'connections':<12} {'clients':>7} {'calls/s':>9}")
        from twisted.internet.defer import Deferred
        from twisted.internet.task import react

        results = []

        async def run_all(reactor):
            for method in ("GetVersion", "ListResources"):
                for keep_alive in (True, False):
                    for concurrency in (1, 8):
                        rate = await measure(reactor, url, folder, method, calls, concurrency, keep_alive)
                        row = f"{method:<14} {'keep-alive' if keep_alive else 'new each':<12} {concurrency:>7} {rate:>9.0f}"
                        print(row, flush=True)
                        results.append(row)

        try:
            react(lambda r: Deferred.fromCoroutine(run_all(r)))
        except SystemExit:
            pass
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


if __name__ == "__main__":
    main()
