# -*- test-case-name: tests.rspec.test_merge -*-
"""
Time the RSpec layer on large documents and print the figures.

Run from the checkout: C{python bench/bench_rspec.py [--switches N] [--aggregates M]}.
It builds an island of N switches in a chain, writes and parses its
advertisement, a manifest and a request, merges M advertisements as the
Slice Manager would, and round-trips the C{geni_compressed} codec.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from geniam.gatewayconfig import MAX_VLANS
from geniam.rspec.advertisement import build_advertisement
from geniam.rspec.compression import compress_rspec, decompress_rspec
from geniam.rspec.manifest import build_manifest
from geniam.rspec.merge import AggregateOutcome, merge_advertisements
from geniam.rspec.parser import ParseLimits, parse_rspec
from geniam.rspec.request import build_request, parse_request
from geniam.rspec.resources import IslandResources
from geniam.rspec.split import split_request

START = 1_800_000_000.0


def _dpid(n: int) -> str:
    raw = f"{n:016x}"
    return ":".join(raw[i : i + 2] for i in range(0, 16, 2))


def _island(authority: str, switches: int) -> IslandResources:
    dpids = [_dpid(n + 1) for n in range(switches)]
    links = [f"{a}:1-{b}:2" for a, b in zip(dpids, dpids[1:])]
    return IslandResources.create(f"urn:publicid:IDN+{authority}+authority+am", dpids, links, gateway_host="gw")


def _time(label: str, repeat: int, action: Callable[[], Any]) -> Any:
    began = time.perf_counter()
    for _ in range(repeat):
        result = action()
    elapsed = (time.perf_counter() - began) / repeat
    print(f"{label:<44} {elapsed * 1000:9.2f} ms")
    return result


def main() -> None:
    """Run every benchmark once with the command-line sizes."""
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0] if __doc__ else None)
    parser.add_argument("--switches", type=int, default=500)
    parser.add_argument("--aggregates", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--short", action="store_true", help="a smaller island and fewer runs, for CI")
    args = parser.parse_args()
    if args.short:
        args.switches, args.aggregates, args.repeat = 100, 5, 1
    limits = ParseLimits(max_bytes=64 * 1024 * 1024, max_elements=10_000_000)
    island = _island("island0.example", args.switches)
    booked = [(START + 7200 * i, START + 7200 * i + 3600) for i in range(200)]

    ad = _time(f"build advertisement ({args.switches} switches)", args.repeat, lambda: build_advertisement(island, booked, START))
    print(f"{'  advertisement size':<44} {len(ad) / 1024:9.1f} KiB")
    _time("parse advertisement", args.repeat, lambda: parse_rspec(ad, "advertisement", limits))
    packed = _time("compress advertisement", args.repeat, lambda: compress_rspec(ad))
    print(f"{'  compressed size':<44} {len(packed) / 1024:9.1f} KiB")
    _time("decompress advertisement", args.repeat, lambda: decompress_rspec(packed, limits))

    vlans = {str(v): str(v + 1000) for v in range(1, MAX_VLANS + 1)}
    request = build_request(START, START + 3600, "192.0.2.1:6633", vlans, island.am_urn)
    _time(f"parse request ({len(vlans)} VLANs, the most a request may name)", args.repeat, lambda: parse_request(request, island.am_urn, limits))
    bookings = [{"sliver_urn": "urn:publicid:IDN+island0.example+sliver+b1", "slot": (START, START + 3600)}]
    _time("build manifest", args.repeat, lambda: build_manifest(island, bookings, START, request=request, limits=limits))

    islands = [_island(f"island{n}.example", args.switches) for n in range(args.aggregates)]
    outcomes = [AggregateOutcome(i.am_urn, 0.1, rspec=build_advertisement(i, booked, START)) for i in islands]
    merged = _time(f"merge {args.aggregates} advertisements", max(1, args.repeat // 2), lambda: merge_advertisements(outcomes, limits=limits))
    print(f"{'  merged size':<44} {len(merged) / 1024:9.1f} KiB")

    body = "".join(
        f'<node client_id="n{n}" component_manager_id="{i.am_urn}"/>' for n, i in enumerate(islands)
    )
    multi = f'<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">{body}</rspec>'
    _time(f"split request over {args.aggregates} aggregates", args.repeat, lambda: split_request(multi, [i.am_urn for i in islands], limits))


if __name__ == "__main__":
    main()
