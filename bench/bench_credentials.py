# -*- test-case-name: tests.trust.test_verifier -*-
"""
Benchmark of credential verification: cold 1- and 3-level chains and the cached repeat.

Run from the checkout: C{python bench/bench_credentials.py [--short]}. It
mints a trust domain (a slice authority and three users), a slice
credential (one level) and a chain delegated twice (three levels), signed
RSA-SHA1 like the GENI reference tools, and times
L{CredentialVerifier.authorize} (inline, no thread pool):

    - cold, everything empty: a new verifier and new trust roots, no parsed
      certificates remembered; the chain's certificates are verified too;
    - new document: the credential itself is new but its certificates were
      seen before (the usual case for an aggregate);
    - cached: the same credential again for the same caller.

It prints the median and 95th percentile in milliseconds against the
targets (cached <= 0.1 ms, cold 3-level <= 5 ms).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from geniam.timeutil import parse_time  # noqa: E402
from geniam.trust import credential as credential_module  # noqa: E402
from geniam.trust.certs import make_authority, make_identity  # noqa: E402
from geniam.trust.gid import GID, TrustRoots  # noqa: E402
from geniam.trust.identity import Identity  # noqa: E402
from geniam.trust.mint import delegate_credential, make_slice, slice_credential  # noqa: E402
from geniam.trust.verifier import CredentialVerifier, Grant  # noqa: E402

NOW = parse_time("2026-11-22T12:00:00Z")
DAY = 86400.0
AUTHORITY = "geni:bench"
SLICE = f"urn:publicid:IDN+{AUTHORITY}+slice+bench"

TARGETS = {"cached 3-level": 0.1, "cold 3-level": 5.0}


@dataclass(frozen=True)
class Chains:
    """The bench trust domain's authority and users, and a 1- and a 3-level slice credential."""

    sa: Identity
    alice: Identity
    carol: Identity
    one: str
    three: str


def mint_chains(algorithm: str) -> Chains:
    """Mint the domain, alice's slice credential, and it delegated to bob and on to carol."""
    sa = make_authority(AUTHORITY, now=NOW - DAY)
    alice, bob, carol = (
        make_identity(sa, f"urn:publicid:IDN+{AUTHORITY}+user+{name}", now=NOW - DAY) for name in ("alice", "bob", "carol")
    )
    slice_gid = make_slice(sa, SLICE, NOW - DAY, NOW + 365 * DAY).gid
    one = slice_credential(sa, alice.gid, slice_gid, NOW + 300 * DAY, algorithm=algorithm)
    two = delegate_credential(one, alice, bob.gid, [("control", True), ("info", True)], NOW + 200 * DAY, algorithm=algorithm)
    three = delegate_credential(two, bob, carol.gid, [("control", False)], NOW + 100 * DAY, algorithm=algorithm)
    return Chains(sa, alice, carol, one, three)


def _grant(verifier: CredentialVerifier, caller: GID, credential: str) -> Grant:
    """Authorise Allocate synchronously (the verifier runs inline)."""
    results: list[Any] = []
    verifier.authorize(caller, [credential], "Allocate", SLICE).addBoth(results.append)
    result = results[0]
    if not isinstance(result, Grant):
        raise SystemExit(f"benchmark credential refused: {result}")
    return result


def _measure(function: Callable[[], Any], setup: Callable[[], Any], runs: int) -> list[float]:
    """Time C{function} C{runs} times (after C{setup} each time); milliseconds."""
    times = []
    for _ in range(runs):
        setup()
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="few runs, for CI")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 300, 30 with --short)")
    args = parser.parse_args(argv)
    runs = args.runs or (30 if args.short else 300)

    chains = mint_chains("sha1")
    sa, alice, carol, one, three = chains.sa, chains.alice, chains.carol, chains.one, chains.three
    print(f"credential sizes: 1-level {len(one)} bytes, 3-level {len(three)} bytes; {runs} runs per case")

    clock = Clock()
    clock.advance(NOW)
    state: dict[str, CredentialVerifier] = {}

    def fresh_everything() -> None:
        credential_module._gid_from_pem.cache_clear()
        state["v"] = CredentialVerifier(TrustRoots.from_certificates([sa.gid]), clock)

    warm = CredentialVerifier(TrustRoots.from_certificates([sa.gid]), clock)

    def forget_documents() -> None:
        warm.clear_cache()
        state["v"] = warm

    cached = CredentialVerifier(TrustRoots.from_certificates([sa.gid]), clock)
    _grant(cached, carol.gid, three)

    def keep() -> None:
        state["v"] = cached

    cases = [
        ("cold 1-level", lambda: _grant(state["v"], alice.gid, one), fresh_everything),
        ("cold 3-level", lambda: _grant(state["v"], carol.gid, three), fresh_everything),
        ("new document 1-level", lambda: _grant(state["v"], alice.gid, one), forget_documents),
        ("new document 3-level", lambda: _grant(state["v"], carol.gid, three), forget_documents),
        ("cached 3-level", lambda: _grant(state["v"], carol.gid, three), keep),
    ]
    print(f"{'case':<24}{'median ms':>11}{'p95 ms':>10}{'target ms':>11}  verdict")
    over = False
    for name, function, setup in cases:
        for _ in range(3):
            setup()
            function()
        times = _measure(function, setup, runs)
        median = statistics.median(times)
        p95 = _percentile(times, 0.95)
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = "ok" if median <= target else "OVER TARGET"
            over = over or median > target
        target_text = f"{target:.1f}" if target is not None else "-"
        print(f"{name:<24}{median:>11.3f}{p95:>10.3f}{target_text:>11}  {verdict}")
    print(f"cache hits of the cached verifier: {cached.cache_hits}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
