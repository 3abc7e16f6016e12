"""
Hostile gateway values through the whole path: Provision over TLS on
127.0.0.1 to an aggregate manager connected over PB to a real gateway agent
with the command back end, whose tools are the recording fake in
C{tests/fake_tools}; what a refusal says, and the exact argument lists the
tools receive for what is accepted. The limits are tested at their edges.
Every payload is generated here.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.client import value_of
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import (
    MAX_KEY_LENGTH,
    MAX_KEYS_PER_USER,
    MAX_USERS,
    MAX_VLANS,
    canonical_controller,
    printable,
    string_values,
    validate_login,
)
from geniam.loopback import LoopbackFederation
from geniam.rspec.request import build_request
from tests.domains import copied_domain
from tests.fixturepaths import GCF
from tests.loopback.test_am_agent import make_domain

HOUR = 3600.0
FAKE_TOOL = str(GCF.parent.parent / "fake_tools" / "fake-tool")
COOKIE = "cookie=0x67656e69616d"


def ssh_key(index: int, body: int = 68) -> str:
    """A distinct well-formed ed25519 key line (generated; not a real key)."""
    blob = base64.b64encode(f"geniam-test-key-{index}-".encode().ljust(body * 3 // 4, b"k")).decode()
    return f"ssh-ed25519 {blob} user{index}@example.org"


def users(count: int, keys_each: int, authority: str = "geniam:demo") -> list[dict[str, Any]]:
    """C{count} users with C{keys_each} distinct keys each, as C{geni_users}."""
    return [
        {"urn": f"urn:publicid:IDN+{authority}+user+u{u}", "keys": [ssh_key(u * 100 + k) for k in range(keys_each)]}
        for u in range(count)
    ]


HOSTILE_CONTROLLERS = [
    "[fe80::1% ;$(id) `x` -oProxyCommand=x\n]:6633",
    "evil\n:6633",
    "127.0.0.1:6633\n",
    "127.0.0.1:6633 -oProxyCommand=x",
    "[::1%\u2028]:6633",
    "127.0.0.1:\u0666\u0666",
    "-oProxyCommand=x:6633",
    "[::1]:0",
]


class ProvisionToArgvTests(TestCase):
    """Controllers, VLAN maps and users through Provision down to the tools' argv."""

    async def start(self) -> LoopbackFederation:
        folder = copied_domain(self, "agent", make_domain)
        self.tools = str(folder / "tools")
        os.makedirs(self.tools)
        for name in ("ovs-ofctl", "redir"):
            os.symlink(FAKE_TOOL, os.path.join(self.tools, name))
        Path(self.tools, "redir.serve").touch()
        config = folder / "agent.toml"
        config.write_text(f"[command]\npath = {json.dumps(self.tools + os.pathsep + os.path.dirname(sys.executable))}\n")
        self.clock = Clock()
        self.clock.advance(time.time())
        fed = LoopbackFederation(
            folder,
            reactor,
            self.clock,
            aggregate_names=("am1",),
            user_names=("alice", "bob"),
            with_agents=True,
            agent_retry=0.05,
            agent_args=("--backend", "command", "--config", str(config)),
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        await fed.start()
        self.fed = fed
        return fed

    def calls(self) -> list[list[str]]:
        path = os.path.join(self.tools, "calls.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as handle:
            return [json.loads(line) for line in handle]

    def alice(self) -> Any:
        fed = self.fed
        return fed.client("alice", "am1", (fed.user_credential("alice"), fed.slice_credential("exp1", "alice")))

    async def allocated(self) -> str:
        now = self.clock.seconds()
        rspec = build_request(now + 60, now + HOUR)
        value = value_of(await self.alice().allocate(self.fed.slice_urn("exp1"), rspec))
        sliver: str = value["geni_slivers"][0]["geni_sliver_urn"]
        return sliver

    async def refused(self, sliver: str, **options: Any) -> tuple[int, str]:
        answer = await self.alice().provision([sliver], **options)
        code = answer["code"]["geni_code"]
        self.assertNotEqual(code, 0, f"accepted: {options!r}")
        return code, str(answer["output"])

    async def slot_started(self) -> None:
        self.clock.advance(61)
        await self.fed.aggregates["am1"].resource_manager.sweep()

    async def test_hostile_values_refused_and_canonical_ones_reach_the_tools(self) -> None:
        """
        Hostile controllers and VLAN maps are refused at Provision with a
        clear GENI error; the controller that is accepted reaches the proxy
        re-formatted, VLAN maps at their limit reach ovs-ofctl in full.
        """
        await self.start()
        sliver = await self.allocated()
        for controller in HOSTILE_CONTROLLERS:
            code, output = await self.refused(sliver, geniam_controller=controller)
            self.assertEqual(code, GeniCode.BADARGS, output)
            self.assertIn("controller", output)
            self.assertNotIn("\n", output)
        for controller, rule in (("10.0.0.1:6633", "not a public address"), ("ctl.example.org:6633", "host names are not accepted")):
            code, output = await self.refused(sliver, geniam_controller=controller)
            self.assertEqual((code, rule in output, "127.0.0.0/8" in output), (GeniCode.REFUSED, True, True), output)
        for vlans, words in (
            ({"10": "0xffff", "010": "20"}, "testbed VLAN 10 is mapped twice"),
            ({str(n): str(n + 100) for n in range(1, MAX_VLANS + 2)}, f"the limit is {MAX_VLANS}"),
            ({"10\n": "20"}, "not an id 1-4094"),
        ):
            code, output = await self.refused(sliver, geniam_vlans=vlans)
            self.assertEqual(code, GeniCode.BADARGS, output)
            self.assertIn(words, output)
        largest = {str(n): str(n + 100) for n in range(1, MAX_VLANS + 1)}
        value_of(await self.alice().provision([sliver], geniam_controller="[0:0:0:0:0:0:0:1]:06633", geniam_vlans=largest))
        self.assertEqual(self.calls(), [])
        await self.slot_started()
        calls = self.calls()
        self.assertIn(["redir", "-n", ":6633", "[::1]:6633"], calls)
        adds = [c for c in calls if c[:2] == ["ovs-ofctl", "add-flow"]]
        self.assertEqual(len(adds), 2 * MAX_VLANS)
        self.assertIn(["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan={MAX_VLANS},actions=mod_vlan_vid:{MAX_VLANS + 100},output:2"], adds)
        self.assertEqual((await self.fed.gateway_state("am1"))["proxy"], "[::1]:6633")

    async def test_user_limits_at_their_edges(self) -> None:
        """
        The most users with the most keys each (at the longest key length)
        are accepted; one more user, one more key, a longer key, or a login
        of root or starting with '-' is refused with BADARGS naming the rule.
        """
        await self.start()
        sliver = await self.allocated()
        largest = users(MAX_USERS, MAX_KEYS_PER_USER)
        tail = " longest@example.org"
        longest = "ssh-ed25519 " + "A" * (MAX_KEY_LENGTH - len("ssh-ed25519 ") - len(tail)) + tail
        largest[0]["keys"][0] = longest
        self.assertEqual(len(longest), MAX_KEY_LENGTH)
        cases = [
            (users(MAX_USERS + 1, 1), f"the limit is {MAX_USERS}"),
            (users(1, MAX_KEYS_PER_USER + 1), f"the limit is {MAX_KEYS_PER_USER}"),
            ([{"urn": largest[0]["urn"], "keys": [longest.replace(tail, "A" + tail)]}], f"the limit is {MAX_KEY_LENGTH}"),
            ([{"urn": "urn:publicid:IDN+geniam:demo+user+root", "keys": []}], "'root' is reserved"),
            ([{"urn": "urn:publicid:IDN+geniam:demo+user+-oProxyCommand", "keys": []}], "may not start with '-'"),
        ]
        for geni_users, words in cases:
            code, output = await self.refused(sliver, geni_users=geni_users)
            self.assertEqual(code, GeniCode.BADARGS, output)
            self.assertIn(words, output)
        value_of(await self.alice().provision([sliver], geni_users=largest))
        await self.slot_started()
        state = await self.fed.gateway_state("am1")
        self.assertEqual(len(state["users"]), MAX_USERS * MAX_KEYS_PER_USER)
        self.assertIn(longest, state["users"])

    async def test_limits_in_get_version(self) -> None:
        """GetVersion advertises the limits and where controllers may be."""
        await self.start()
        version = value_of(await self.alice().get_version())
        self.assertEqual(
            version["geniam_limits"],
            {"vlans": MAX_VLANS, "users": MAX_USERS, "keys_per_user": MAX_KEYS_PER_USER, "key_length": MAX_KEY_LENGTH},
        )
        self.assertEqual(version["geniam_controller_networks"], ["public", "127.0.0.0/8", "::1/128"])


class ValueTests(SynchronousTestCase):
    """The validators' canonical forms and the log and argv guards."""

    def test_canonical_controllers(self) -> None:
        """Only a re-formatted host:port leaves the validator."""
        for given, canonical in (
            ("CTL.Example.ORG.:06653", "ctl.example.org:6653"),
            ("[2001:DB8:0::1]:6633", "[2001:db8::1]:6633"),
            ("[fe80::1%eth0]:6633", "[fe80::1%eth0]:6633"),
            ("192.0.2.1:6633", "192.0.2.1:6633"),
        ):
            self.assertEqual(canonical_controller(given), canonical)

    def test_logins(self) -> None:
        """Logins starting with '-' or equal to root are refused; ordinary ones pass."""
        self.assertEqual(validate_login("alice.b-c_1"), "alice.b-c_1")
        for bad in ("root", "ROOT", "-x", "a b", "", "a" * 33, "al\nice"):
            self.assertRaises(GeniError, validate_login, bad)

    def test_printable(self) -> None:
        """Values logged cannot start a new log line."""
        self.assertEqual(printable("a\nb\x1b[0m\u2028"), "a\\nb\\x1b[0m\\u2028")
        self.assertEqual(printable("plain"), "plain")

    def test_argv_control_characters_refused(self) -> None:
        """A NUL or other control character never reaches a spawn: REFUSED instead."""
        self.assertEqual(string_values(["redir", ":6633"]), ["redir", ":6633"])
        for bad in ("a\x00b", "a\nb", "\x7f"):
            error = self.assertRaises(GeniError, string_values, ["redir", bad])
            self.assertEqual(error.code, GeniCode.REFUSED)
