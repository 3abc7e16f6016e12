# -*- test-case-name: tests.cli.test_agent -*-
"""
C{geniam agent}: inspect a gateway agent.

C{geniam agent state --agent HOST:PORT --trust-roots FILE_OR_DIR --certificate CERT
--private-key KEY} logs in to the agent as the holder of CERT (an AM's
certificate: the agent refuses others) and prints what it has applied now:
the users' SSH keys, the controller proxy and the VLAN map. It exits 0 on
success, 1 when the agent is unreachable or refuses, 2 on bad usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from twisted.internet.defer import Deferred
from twisted.python import usage

from geniam.errors import GeniError
from geniam.gatewayconfig import UNTAGGED
from geniam.options import GeniamOptions

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


class StateOptions(GeniamOptions):
    """Options of C{geniam agent state}."""

    synopsis = "--agent HOST:PORT --trust-roots FILE_OR_DIR --certificate CERT --private-key KEY [options]"
    longdesc = "Print what the gateway agent has applied now: users' SSH keys, the controller proxy and the VLAN map."
    optParameters = [
        ["agent", None, None, "the agent's address, HOST:PORT"],
        ["trust-roots", None, None, "CA certificates the agent's certificate must chain to: a PEM file or a folder of them"],
        ["certificate", None, None, "certificate to log in with (an AM's; PEM)"],
        ["private-key", None, None, "its private key (PEM)"],
        ["agent-urn", None, None, "the URN the agent's certificate must carry [default: any aggregate certificate]"],
        ["secret-file", None, None, "file holding the agent's shared secret, if it has one"],
        ["timeout", None, 10.0, "seconds to wait for the agent", float],
    ]
    optFlags = [["json", None, "print JSON instead of text"]]

    def postOptions(self) -> None:
        """Require the agent, the trust roots and an identity."""
        missing = [f"--{k}" for k in ("agent", "trust-roots", "certificate", "private-key") if not self[k]]
        if missing:
            raise usage.UsageError(f"missing {', '.join(missing)}")
        if not 0 < self["timeout"] <= 3600:
            raise usage.UsageError("--timeout must be 0-3600 seconds")
        from geniam.protocols.pbclient import parse_agent_address

        try:
            parse_agent_address(self["agent"])
        except GeniError as e:
            raise usage.UsageError(f"--agent: {e.output}") from None


class AgentCommandOptions(GeniamOptions):
    """Options of C{geniam agent}."""

    synopsis = "Usage: geniam agent"
    longdesc = "Inspect a gateway agent."
    subCommands = [["state", None, StateOptions, "print what the agent has applied now"]]

    def postOptions(self) -> None:
        """Require a subcommand."""
        if self.subCommand is None:
            raise usage.UsageError("missing a command (state)")


def format_state(state: dict[str, Any], address: str, agent_urn: str = "") -> str:
    """Render an agent's state for people."""
    lines = [f"Gateway agent {address}" + (f" ({agent_urn})" if agent_urn else "")]
    users = state.get("users", [])
    lines.append(f"Users: {len(users)} SSH key{'s' if len(users) != 1 else ''}" + (":" if users else ""))
    lines += [f"  {key}" for key in users]
    lines.append(f"Proxy: controller port forwarded to {state['proxy']}" if state.get("proxy") else "Proxy: none")
    vlans = state.get("vlans", {})
    if vlans:
        lines.append("VLAN map (testbed -> island):")
        for testbed in sorted(vlans, key=int):
            island = vlans[testbed]
            lines.append(f"  {testbed:>4} -> {'untagged' if island == UNTAGGED else island}")
    else:
        lines.append("VLAN map: none")
    return "\n".join(lines)


def _read_secret(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(4096).strip()


async def run_state(reactor: Any, options: StateOptions, out: TextIO, err: TextIO, clock: Any = None) -> int:
    """
    Connect, log in, fetch the state and print it.

    @param clock: the time certificates are checked at (default: C{reactor}).
    @return: the exit status.
    """
    from geniam.protocols.pb import open_session
    from geniam.protocols.pbclient import agent_peer_check, make_gateway_agent_endpoint
    from geniam.trust.gid import TrustRoots
    from geniam.trust.identity import Identity

    clock = clock or reactor
    address = options["agent"]
    try:
        identity = Identity.from_files(options["certificate"], options["private-key"])
        roots = TrustRoots.from_path(options["trust-roots"])
        secret = _read_secret(options["secret-file"]) if options["secret-file"] else None
    except GeniError as e:
        print(f"geniam agent state: {e.output}", file=err)
        return EXIT_USAGE
    except OSError as e:
        print(f"geniam agent state: cannot read {e.filename}: {e.strerror}", file=err)
        return EXIT_USAGE
    timeout = options["timeout"]
    try:
        endpoint = make_gateway_agent_endpoint(reactor, address, identity, roots, options["agent-urn"], clock, timeout)
        session = await open_session(
            endpoint,
            clock,
            secret=secret,
            check_peer=agent_peer_check(roots, clock, options["agent-urn"]),
            login_timeout=timeout,
            call_timeout=timeout,
        )
        try:
            state = await session.state()
        finally:
            await session.close()
    except GeniError as e:
        print(f"geniam agent state: {address}: {e.output}", file=err)
        return EXIT_FAILED
    if options["json"]:
        print(json.dumps({"agent": address, "agent_urn": session.agent_urn, **state}, indent=2, sort_keys=True), file=out)
    else:
        print(format_state(state, address, session.agent_urn), file=out)
    return EXIT_OK


def main(argv: list[str]) -> int:
    """Run C{geniam agent ...}; return the exit status."""
    options = AgentCommandOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"geniam agent: {e}\n\n{getattr(options, 'subOptions', None) or options}", file=sys.stderr)
        return EXIT_USAGE
    from twisted.internet.task import react

    status = [EXIT_FAILED]

    async def run(reactor: Any) -> None:
        status[0] = await run_state(reactor, options.subOptions, sys.stdout, sys.stderr)

    try:
        react(lambda reactor: Deferred.fromCoroutine(run(reactor)))
    except SystemExit:
        pass
    return status[0]
