# -*- test-case-name: tests.protocols.test_marshal -*-
"""
Micro benchmark of XML-RPC encoding and decoding with RSpec-sized payloads.

Run from the checkout: C{python bench/bench_xmlrpc.py [--repeat N]}. It
prints, per payload size, the best time of C{parse_call} on an Allocate
request and of C{dump_response} and C{parse_response} on a Describe-like
reply, with throughput in MB/s.
"""

from __future__ import annotations

import argparse
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from geniam.errors import success_struct  # noqa: E402
from geniam.protocols.marshal import dump_call, dump_response, parse_call, parse_response  # noqa: E402

NODE = (
    '<node client_id="n{index}" component_id="urn:publicid:IDN+island.example+node+n{index}" exclusive="true">'
    '<sliver_type name="raw-pc"/><interface client_id="n{index}:if0"/></node>\n'
)


def rspec_of_size(size: int) -> str:
    """An RSpec-like document of about C{size} characters, with markup to escape."""
    nodes = []
    total = 0
    index = 0
    while total < size:
        node = NODE.format(index=index)
        nodes.append(node)
        total += len(node)
        index += 1
    return '<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3">\n' + "".join(nodes) + "</rspec>\n"


def best(function: Callable[[], Any], repeat: int) -> float:
    """The best of C{repeat} single runs, in seconds."""
    return min(timeit.repeat(function, number=1, repeat=repeat))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print one line per operation and size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best is kept)")
    parser.add_argument("--short", action="store_true", help="one run per measurement, for CI")
    args = parser.parse_args(argv)
    if args.short:
        args.repeat = 1
    print(f"{'operation':<16}{'payload':>10}{'wire':>10}{'best ms':>10}{'MB/s':>9}")
    for size in (1_000, 100_000, 1_000_000, 4_000_000):
        rspec = rspec_of_size(size)
        request = dump_call("Allocate", ["urn:publicid:IDN+sa.example+slice+s1", [], rspec, {}])
        reply_value = success_struct(
            {
                "geni_rspec": rspec,
                "geni_urn": "urn:publicid:IDN+sa.example+slice+s1",
                "geni_slivers": [
                    {"geni_sliver_urn": f"urn:publicid:IDN+am.example+sliver+{i}", "geni_error": None}
                    for i in range(50)
                ],
            }
        )
        reply = dump_response(reply_value)
        cases: list[tuple[str, Callable[[], Any], int]] = [
            ("parse_call", lambda: parse_call(request), len(request)),
            ("dump_response", lambda: dump_response(reply_value), len(reply)),
            ("parse_response", lambda: parse_response(reply), len(reply)),
        ]
        for name, function, wire in cases:
            seconds = best(function, args.repeat)
            print(f"{name:<16}{len(rspec):>10}{wire:>10}{seconds * 1000:>10.2f}{wire / seconds / 1e6:>9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
