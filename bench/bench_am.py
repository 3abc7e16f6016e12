"""
Aggregate manager throughput against the bare-Twisted limit, over TLS with
client certificates.

Makes a development trust domain in a temporary folder (a user, alice,
and the aggregate's identity), then starts, each in a child process:

  - the aggregate manager exactly as an operator would
    (C{twistd -n geniam-am --data-dir ...}, simulated gateway, SQLite);
  - the reference (bench/reference_am.py): a plain C{twisted.web.xmlrpc}
    resource over the same TLS, the same certificates, a required client
    certificate, answering GetVersion and ListResources with constants:
    what the aggregate manager answered, so both send the same bytes. Two
    of them: with Twisted's defaults (no session resumption), the limit for
    kept-alive connections and full handshakes, and one offering session
    resumption, the limit for clients that resume.

The load (bench/tlsload.py) is light: raw sockets with the standard C{ssl}
module and a request encoded once, in 1 and 4 client processes, over
kept-alive connections, a new TLS connection per call, and a new
connection per call that resumes the previous TLS session. ListResources
carries alice's user credential. Each figure is measured on the reference
and on the aggregate manager alternately, several times, and printed as
the median calls per second of each and the median ratio of each
measurement of the aggregate manager to the reference's just before it:
absolute figures of a shared machine vary, ratios of neighbouring
measurements hold better.

  python bench/bench_am.py [--short] [--seconds S] [--repeat N] [--profile FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP))
sys.path.insert(0, str(TOP / "bench"))

from tlsload import MODES, Target, call_once, run_load  # noqa: E402

TARGETS = {
    ("GetVersion", "keep-alive"): 0.8,
    ("GetVersion", "new"): 0.9,
    ("ListResources", "keep-alive"): 0.8,
}
"""The ratios the aggregate manager aims for."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 60.0) -> None:
    """Wait until C{port} accepts connections, or fail if C{process} died."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def stop(process: subprocess.Popen[Any]) -> None:
    """Terminate a child server and wait for it."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def make_domain(folder: Path) -> tuple[Any, str]:
    """The trust domain the aggregate manager will use, with alice; return it and alice's user credential."""
    from geniam.trust.domain import TrustDomain
    from geniam.trust.mint import user_credential

    domain = TrustDomain.create(folder / "trust", now=time.time() - 60)
    domain.add_user("alice", now=time.time() - 60)
    domain.ensure_aggregate("am")
    credential = user_credential(domain.ca, domain.user("alice").gid, time.time() + 30 * 86400)
    return domain, credential


PROFILED = """
import cProfile, sys
from twisted.internet import reactor
from twisted.scripts.twistd import run
profile, sys.argv = sys.argv[1], ["twistd", *sys.argv[2:]]
profiler = cProfile.Profile()
reactor.addSystemEventTrigger("after", "shutdown", lambda: (profiler.disable(), profiler.dump_stats(profile)))
profiler.enable()
run()
"""


def start_am(folder: Path, port: int, profile: str | None = None) -> subprocess.Popen[Any]:
    """C{twistd -n geniam-am} in a child process, its log in the folder (under cProfile with C{profile})."""
    env = dict(os.environ, PYTHONPATH=str(TOP))
    arguments = [
        "-n", "--pidfile=", f"--logfile={folder / 'am.log'}",
        "geniam-am", "--data-dir", str(folder), "--port", str(port), "--interface", "127.0.0.1",
    ]
    twistd = Path(sys.executable).with_name("twistd")
    if profile:
        command = [sys.executable, "-c", PROFILED, profile, *arguments]
    else:
        command = [sys.executable, str(twistd) if twistd.exists() else shutil.which("twistd") or "twistd", *arguments]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)


def start_reference(folder: Path, port: int, domain: Any, answers: dict[str, Any], sessions: bool) -> subprocess.Popen[Any]:
    """The bare-Twisted reference in a child process."""
    answers_path = folder / "answers.json"
    answers_path.write_text(json.dumps(answers))
    command = [
        sys.executable, str(TOP / "bench" / "reference_am.py"), str(port),
        str(domain.cert_path("aggregates", "am")), str(domain.key_path("aggregates", "am")),
        str(domain.roots_dir), str(answers_path),
    ]
    if sessions:
        command.append("--sessions")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=folder)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--short", action="store_true", help="a few seconds in all, for CI")
    parser.add_argument("--seconds", type=float, default=None, help="seconds per measurement")
    parser.add_argument("--repeat", type=int, default=None, help="measurements per figure and server")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--methods", nargs="+", default=["GetVersion", "ListResources"])
    parser.add_argument("--profile", metavar="FILE", help="also start the AM under cProfile, writing FILE")
    args = parser.parse_args(argv)
    seconds = args.seconds or (0.4 if args.short else 1.0)
    repeat = args.repeat or (1 if args.short else 5)
    clients = [1] if args.short and args.clients == [1, 4] else args.clients

    folder = Path(tempfile.mkdtemp(prefix="geniam-bench-am-"))
    domain, credential = make_domain(folder)
    roots = folder / "roots.pem"
    roots.write_bytes(b"".join(p.read_bytes() for p in sorted(domain.roots_dir.glob("*.pem"))))
    am_port, ref_port, resuming_port = free_port(), free_port(), free_port()
    am = start_am(folder, am_port, args.profile)
    ref = ref_resuming = None
    try:
        wait_for_port(am_port, am)
        user = (str(domain.cert_path("users", "alice")), str(domain.key_path("users", "alice")))
        am_target = Target("127.0.0.1", am_port, *user, str(roots))
        ref_targets = {
            mode: Target("127.0.0.1", resuming_port if mode == "resume" else ref_port, *user, str(roots)) for mode in MODES
        }
        cred = {"geni_type": "geni_sfa", "geni_version": "3", "geni_value": credential}
        ad_options = {"geni_rspec_version": {"type": "GENI", "version": "3"}}
        params = {"GetVersion": (), "ListResources": ([cred], ad_options)}
        answers = {method: call_once(am_target, method, params[method]) for method in params}
        for method, answer in answers.items():
            if answer["code"]["geni_code"] != 0:
                raise RuntimeError(f"{method} failed: {answer.get('output')}")
        ref = start_reference(folder, ref_port, domain, answers, sessions=False)
        ref_resuming = start_reference(folder, resuming_port, domain, answers, sessions=True)
        wait_for_port(ref_port, ref)
        wait_for_port(resuming_port, ref_resuming)
        print(
            f"aggregate manager (twistd geniam-am) and bare-Twisted reference, each in its own process; "
            f"ListResources RSpec {len(answers['ListResources']['value'])} characters; "
            f"{repeat} x {seconds:g} s per figure and server"
        )
        print(f"{'method':<14} {'connection':<11} {'clients':>7} {'reference/s':>12} {'geniam/s':>10} {'ratio':>7} {'resumed':>8}  target")
        for method in args.methods:
            for mode in args.modes:
                for processes in clients:
                    ref_rates, am_rates, resumed = [], [], []
                    for _ in range(repeat):
                        ref_rates.append(run_load(ref_targets[mode], method, params[method], mode, processes, seconds)[0])
                        rate, share = run_load(am_target, method, params[method], mode, processes, seconds)
                        am_rates.append(rate)
                        resumed.append(share)
                    # Each measurement of the AM is paired with the reference's just before it.
                    ratio = statistics.median(a / r for a, r in zip(am_rates, ref_rates))
                    target = TARGETS.get((method, mode))
                    shown = f">= {target}x" if target else ""
                    resumed_text = f"{min(resumed):.0%}" if mode == "resume" else ""
                    print(
                        f"{method:<14} {mode:<11} {processes:>7} {statistics.median(ref_rates):>12.0f} "
                        f"{statistics.median(am_rates):>10.0f} {ratio:>6.2f}x {resumed_text:>8}  {shown}",
                        flush=True,
                    )
    finally:
        for process in (ref, ref_resuming):
            if process is not None:
                stop(process)
        stop(am)
        if not args.profile:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
