# -*- test-case-name: tests.trust.test_hostile_chains -*-
"""
Benchmark of credential verification against hostile certificate chains.

Run from the checkout: C{python bench/bench_hostile_chains.py [--short]}.
It mints a trust domain and a legitimate 3-level chain (a slice
credential delegated twice), then the adversarial credentials of
C{tests/hostile_chains.py}, each carrying N self-issued CA certificates
that share one name and one key (each appears to sign every other):

    - owner: a validly signed delegation whose C{owner_gid} is a leaf
      plus N flood certificates (N = 4..15, the most one PEM may hold);
    - tampered: the same flood swapped into a signed level, so its
      signature fails (N = 4..15);
    - keyinfo: three delegations signed by the flood's leaf with N flood
      certificates in each signature's KeyInfo (N = 4..7, the most a
      KeyInfo may hold).

Each is verified with C{CredentialVerifier.verify_credential} (inline, no
cache) and the median time is printed next to the legitimate 3-level
chain measured in the same run, as a ratio. Bounded work shows as flat
ratios: the largest N costs about what the smallest does. The run fails
(exit status 1) if a hostile credential verifies, or if the cost at the
largest N exceeds eight times the cost at the smallest (flooding
costs at most the linear work of reading the certificates).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from twisted.internet.task import Clock  # noqa: E402

from bench_credentials import NOW, mint_chains  # noqa: E402
from geniam.trust.gid import TrustRoots  # noqa: E402
from geniam.trust.verifier import CredentialVerifier  # noqa: E402
from tests.hostile_chains import (  # noqa: E402
    keyinfo_flood_credential,
    owner_flood_credential,
    tampered_owner_credential,
)

FLATNESS = 8.0
"""The most the largest N may cost, as a multiple of the smallest, for the work to count as bounded."""


def _median_ms(function: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per case and N."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="few runs and fewer sizes, for CI")
    parser.add_argument("--runs", type=int, default=None, help="runs per case (default 20, 3 with --short)")
    parser.add_argument("--max-n", type=int, default=15, help="the largest flood to try (default 15)")
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.short else 20)

    chains = mint_chains("sha256")
    alice, root, three = chains.alice, chains.one, chains.three
    roots = TrustRoots.from_certificates([chains.sa.gid])
    clock = Clock()
    clock.advance(NOW)

    def verify(document: str) -> bool:
        return CredentialVerifier(TrustRoots(roots.certificates), clock, cache_size=0).verify_credential(document, NOW).ok

    if not verify(three):
        raise SystemExit("the legitimate 3-level chain was refused")
    reference = _median_ms(lambda: verify(three), runs)
    print(f"legitimate 3-level chain: median {reference:.2f} ms ({runs} runs per case)")

    sizes = [4, 5, 6, 7, 8, 10, 12, 15] if args.short else list(range(4, 16))
    sizes = [n for n in sizes if n <= args.max_n]
    cases: list[tuple[str, Callable[[int], str], list[int]]] = [
        ("owner", lambda n: owner_flood_credential(root, alice, n, NOW), sizes),
        ("tampered", lambda n: tampered_owner_credential(root, n, NOW), sizes),
        ("keyinfo", lambda n: keyinfo_flood_credential(root, alice, 3, n, NOW), [n for n in sizes if n <= 7]),
    ]
    print(f"{'case':<10}{'N':>4}{'median ms':>12}{'x legit':>10}")
    failed = False
    for name, make, counts in cases:
        medians = []
        for count in counts:
            document = make(count)
            if verify(document):
                print(f"{name:<10}{count:>4}  VERIFIED: a hostile credential was accepted")
                failed = True
                continue
            median = _median_ms(lambda: verify(document), runs)
            medians.append(median)
            print(f"{name:<10}{count:>4}{median:>12.2f}{median / reference:>10.2f}", flush=True)
        if len(medians) >= 2:
            growth = medians[-1] / medians[0]
            verdict = "bounded" if growth <= FLATNESS else "NOT BOUNDED"
            failed = failed or growth > FLATNESS
            print(f"{name:<10} N={counts[-1]} costs {growth:.2f}x N={counts[0]}: {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
