"""
Tests for L{geniam.agent.backends.command}: the exact argument lists, over
a fake process reactor, and over real processes running a fake executable
(C{tests/fake_tools/fake-tool}) that records its arguments.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from geniam.agent.backend import StateFile
from geniam.gateway.config import GatewayConfig
from geniam.agent.backends.command import CommandBackend
from geniam.agent.backends.commandsettings import (
    DEFAULT_COOKIE,
    KEYS_HEADER,
    CommandSettings,
    CommandTemplate,
    find_executable,
)
from geniam.errors import GeniCode, GeniError
from tests.agent.test_backend import KEY_A, KEY_B, FakeProcessReactor, make_tool_dir
from tests.fixturepaths import FAKE_TOOLS

COOKIE = f"cookie={DEFAULT_COOKIE:#x}"
FAKE_TOOL = str(FAKE_TOOLS / "fake-tool")


class TemplateTests(SynchronousTestCase):
    """Checking and rendering argv templates."""

    def test_render_whole_elements(self) -> None:
        """Placeholders are replaced by whole values; literal elements stay as they are."""
        template = CommandTemplate.parse(["ovs-ofctl", "add-flow", "{bridge}", "{flow_to_island}"], frozenset({"bridge", "flow_to_island"}), "t")
        self.assertEqual(
            template.render({"bridge": "br0", "flow_to_island": "a b;c"}),
            ["ovs-ofctl", "add-flow", "br0", "a b;c"],
        )

    def test_refused_templates(self) -> None:
        """Spliced placeholders, unknown names, a placeholder program and non-lists are refused."""
        allowed = frozenset({"bridge"})
        for bad in (
            [],
            "ovs-ofctl del-flows br0",
            ["ovs-ofctl", "br={bridge}"],
            ["ovs-ofctl", "{bridge"],
            ["ovs-ofctl", "{controller}"],
            ["{bridge}", "x"],
            ["ovs-ofctl", ""],
            ["ovs-ofctl", 3],
            ["ovs-ofctl", "a\x00b"],
        ):
            self.assertRaises(ValueError, CommandTemplate.parse, bad, allowed, "t")

    def test_settings_from_config(self) -> None:
        """The [command] table sets every parameter; unknown keys and bad values are refused."""
        settings = CommandSettings.from_config(
            {
                "bridge": "br-gw",
                "testbed-port": 3,
                "island_port": 4,
                "cookie": "0x10",
                "listen-port": 6653,
                "authorized-keys": "keys",
                "timeout": 5,
                "proxy": ["socat-wrapper", "{controller_host}", "{controller_port}"],
                "users-changed": [["reload-keys", "{authorized_keys}"]],
                "switches": ["list-switches"],
            },
            "/data",
            "/etc/geniam",
        )
        self.assertEqual(settings.bridge, "br-gw")
        self.assertEqual((settings.testbed_port, settings.island_port, settings.cookie, settings.listen_port), (3, 4, 16, 6653))
        self.assertEqual(settings.authorized_keys, "/etc/geniam/keys")
        self.assertTrue(os.path.isabs(CommandSettings.from_config({"authorized-keys": "k"}, "d").authorized_keys))
        self.assertEqual(settings.timeout, 5.0)
        self.assertEqual(CommandSettings.from_config({}, "/data").authorized_keys, "/data/authorized_keys")
        for bad in (
            {"colour": "red"},
            {"bridge": "br0; reboot"},
            {"testbed-port": 0},
            {"listen-port": "6633"},
            {"cookie": "zero"},
            {"cookie": 0},
            {"timeout": -1},
            {"vlan-add": [["ovs-ofctl", "{controller}"]]},
            {"proxy": ["redir", "{bridge}"]},
        ):
            self.assertRaises(ValueError, CommandSettings.from_config, bad, "/data")

    def test_find_executable(self) -> None:
        """Programs are looked up on the configured path only; a missing one is REFUSED."""
        tools = make_tool_dir(self)
        self.assertEqual(find_executable("redir", tools), os.path.join(tools, "redir"))
        self.assertEqual(find_executable(os.path.join(tools, "redir"), ""), os.path.join(tools, "redir"))
        error = self.assertRaises(GeniError, find_executable, "ovs-vsctl", tools)
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertIn("ovs-vsctl", error.output)


class CommandArgvTests(SynchronousTestCase):
    """The exact commands the back end runs, over fake processes."""

    def setUp(self) -> None:
        self.reactor = FakeProcessReactor()
        self.tools = make_tool_dir(self)
        self.data = self.mktemp()
        self.table: dict[str, Any] = {"path": self.tools}
        self.backend = self.make()
        self.successResultOf(self.backend.start())

    def make(self) -> CommandBackend:
        settings = CommandSettings.from_config(self.table, self.data)
        return CommandBackend(StateFile(os.path.join(self.data, "state.json")), settings, self.reactor)

    def test_set_ovs_argv(self) -> None:
        """setOvs clears the agent's flows, then adds two flows per mapping, in VLAN order."""
        self.successResultOf(self.backend.set_ovs({"30": "20", "10": "0xffff"}))
        self.assertEqual(
            self.reactor.argvs,
            [
                ["ovs-ofctl", "del-flows", "br0", f"{COOKIE}/-1"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan=10,actions=strip_vlan,output:2"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=2,vlan_tci=0x0000/0x1fff,actions=mod_vlan_vid:10,output:1"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan=30,actions=mod_vlan_vid:20,output:2"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=2,dl_vlan=20,actions=mod_vlan_vid:30,output:1"],
            ],
        )

    def test_set_ovs_idempotent(self) -> None:
        """Setting the VLAN map that is applied runs nothing."""
        self.successResultOf(self.backend.set_ovs({"10": "20"}))
        count = len(self.reactor.spawned)
        self.successResultOf(self.backend.set_ovs({"10": "20"}))
        self.assertEqual(len(self.reactor.spawned), count)

    def test_set_ovs_difference(self) -> None:
        """
        A change to an applied map removes and adds only the mappings that
        differ; a retry after a failure part-way does only what is missing.
        """
        self.successResultOf(self.backend.set_ovs({"10": "20", "30": "40"}))
        self.reactor.spawned.clear()
        self.reactor.exit_codes["ovs-ofctl"] = 0
        target = {"10": "20", "30": "41", "50": "0xffff"}
        self.reactor.fail_matching = "dl_vlan=50"
        self.failureResultOf(self.backend.set_ovs(target), GeniError)
        self.assertEqual(
            [argv[1:3] + [argv[3].split(",actions")[0]] for argv in self.reactor.argvs],
            [
                ["del-flows", "br0", f"{COOKIE}/-1,in_port=1,dl_vlan=30"],
                ["del-flows", "br0", f"{COOKIE}/-1,in_port=2,dl_vlan=40"],
                ["add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan=30"],
                ["add-flow", "br0", f"{COOKIE},priority=100,in_port=2,dl_vlan=41"],
                ["add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan=50"],
                ["del-flows", "br0", f"{COOKIE}/-1,in_port=1,dl_vlan=50"],
                ["del-flows", "br0", f"{COOKIE}/-1,in_port=2,vlan_tci=0x0000/0x1fff"],
            ],
        )
        self.assertEqual(dict(self.successResultOf(self.backend.state()).vlans), {"10": "20", "30": "41"})
        self.reactor.fail_matching = None
        self.reactor.spawned.clear()
        self.successResultOf(self.backend.set_ovs(target))
        self.assertEqual([argv[3].split(",actions")[0].rpartition(",")[2] for argv in self.reactor.argvs], ["dl_vlan=50", "vlan_tci=0x0000/0x1fff"])
        self.reactor.spawned.clear()
        self.successResultOf(self.backend.set_ovs(target))
        self.assertEqual(self.reactor.argvs, [])
        self.assertEqual(dict(self.successResultOf(self.backend.state()).vlans), target)

    def test_rem_ovs_argv(self) -> None:
        """remOvs deletes the flows carrying the agent's cookie."""
        self.successResultOf(self.backend.rem_ovs())
        self.assertEqual(self.reactor.argvs, [["ovs-ofctl", "del-flows", "br0", f"{COOKIE}/-1"]])

    def test_configured_vlan_commands(self) -> None:
        """Configured templates are used, with the values as whole elements."""
        self.table.update(
            {
                "bridge": "br-gw",
                "vlan-clear": [["ovs-ofctl", "--strict", "del-flows", "{bridge}", "{cookie_match}"]],
                "vlan-add": [["ovs-ofctl", "add-flow", "{bridge}", "{flow_to_island}"], ["reload-keys", "{testbed_vlan}", "{island_vlan}"]],
            }
        )
        backend = self.make()
        self.successResultOf(backend.start())
        self.successResultOf(backend.set_ovs({"7": "8"}))
        self.assertEqual(
            self.reactor.argvs,
            [
                ["ovs-ofctl", "--strict", "del-flows", "br-gw", f"{COOKIE}/-1"],
                ["ovs-ofctl", "add-flow", "br-gw", f"{COOKIE},priority=100,in_port=1,dl_vlan=7,actions=mod_vlan_vid:8,output:2"],
                ["reload-keys", "7", "8"],
            ],
        )

    def test_failed_command_refused(self) -> None:
        """A failing tool makes the call fail with REFUSED and its message; what stays installed stays recorded."""
        self.successResultOf(self.backend.set_ovs({"10": "20"}))
        self.reactor.exit_codes["ovs-ofctl"] = 1
        self.reactor.stderr["ovs-ofctl"] = b"ovs-ofctl: br0 is not a bridge or a socket\n"
        failure = self.failureResultOf(self.backend.set_ovs({"11": "21"}), GeniError)
        self.assertEqual(failure.value.code, GeniCode.REFUSED)
        self.assertIn("br0 is not a bridge", failure.value.output)
        self.assertIn("exit status 1", failure.value.output)
        self.assertEqual(self.successResultOf(self.backend.state()).vlans, {"10": "20"})

    def test_command_timeout_kills(self) -> None:
        """A command running past the timeout is killed and the call fails."""
        self.reactor.hang.add("ovs-ofctl")
        d = self.backend.rem_ovs()
        self.assertNoResult(d)
        self.reactor.advance(30)
        self.assertEqual(self.reactor.spawned[-1].signals, ["KILL"])
        self.assertIn("killed by signal", self.failureResultOf(d, GeniError).value.output)

    def test_proxy_runs_until_removed(self) -> None:
        """setTCPProxy starts the proxy with the controller as one element; remTCPProxy terminates it."""
        self.successResultOf(self.backend.set_tcp_proxy("192.168.100.1:6633"))
        self.assertEqual(self.reactor.argvs, [["redir", "-n", ":6633", "192.168.100.1:6633"]])
        proxy = self.reactor.spawned[0]
        self.successResultOf(self.backend.set_tcp_proxy("192.168.100.1:6633"))
        self.assertEqual(len(self.reactor.spawned), 1)
        self.assertEqual(self.successResultOf(self.backend.state()).proxy, "192.168.100.1:6633")
        self.successResultOf(self.backend.rem_tcp_proxy())
        self.assertEqual(proxy.signals, ["TERM"])
        self.assertEqual(self.successResultOf(self.backend.state()).proxy, "")

    def test_proxy_replaced(self) -> None:
        """A new controller stops the old proxy before starting the new one."""
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.successResultOf(self.backend.set_tcp_proxy("[2001:db8::1]:6653"))
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        self.assertEqual(self.reactor.argvs[1], ["redir", "-n", ":6633", "[2001:db8::1]:6653"])

    def test_proxy_killed_after_grace(self) -> None:
        """A proxy ignoring SIGTERM is killed after the grace period."""
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.reactor.obey_signals = False
        d = self.backend.rem_tcp_proxy()
        self.assertNoResult(d)
        self.reactor.obey_signals = True
        self.reactor.advance(5)
        self.successResultOf(d)
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM", "KILL"])

    def test_proxy_death_shows(self) -> None:
        """If the proxy process dies, state() no longer reports it, so drift is visible."""
        from twisted.internet.error import ProcessTerminated
        from twisted.python.failure import Failure

        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.reactor.spawned[0].end(Failure(ProcessTerminated(exitCode=1)))
        self.assertEqual(self.successResultOf(self.backend.state()).proxy, "")
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_proxy_restarted_with_agent(self) -> None:
        """stop() terminates the proxy and a new back end on the same state starts it again."""
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.successResultOf(self.backend.stop())
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        again = self.make()
        self.successResultOf(again.start())
        self.assertEqual(self.reactor.argvs[-1], ["redir", "-n", ":6633", "10.0.0.1:6633"])
        self.assertEqual(self.successResultOf(again.state()).proxy, "10.0.0.1:6633")

    def test_configured_proxy_values(self) -> None:
        """The proxy template may take host and port as separate elements."""
        self.table["proxy"] = ["redir", "--lport", "{listen_port}", "--caddr", "{controller_host}", "--cport", "{controller_port}"]
        self.table["listen-port"] = 16633
        backend = self.make()
        self.successResultOf(backend.start())
        self.successResultOf(backend.set_tcp_proxy("ctl.example.org:6653"))
        self.assertEqual(self.reactor.argvs[-1], ["redir", "--lport", ":16633", "--caddr", "ctl.example.org", "--cport", "6653"])

    def test_keys_file_and_hook(self) -> None:
        """setUserAuth rewrites the keys file (mode 0600) and runs the users-changed commands."""
        self.table["users-changed"] = [["reload-keys", "{authorized_keys}"]]
        backend = self.make()
        self.successResultOf(backend.start())
        self.successResultOf(backend.set_user_auth((KEY_A, KEY_B)))
        path = os.path.abspath(os.path.join(self.data, "authorized_keys"))
        with open(path) as handle:
            self.assertEqual(handle.read(), KEYS_HEADER + KEY_A + "\n" + KEY_B + "\n")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        self.assertEqual(self.reactor.argvs[-1], ["reload-keys", path])
        count = len(self.reactor.spawned)
        self.successResultOf(backend.set_user_auth((KEY_A,)))
        self.assertEqual(len(self.reactor.spawned), count)

    def test_keys_file_edits_show(self) -> None:
        """state() reports the keys actually in the file."""
        self.successResultOf(self.backend.set_user_auth((KEY_A, KEY_B)))
        with open(os.path.join(self.data, "authorized_keys"), "w") as handle:
            handle.write(KEY_B + "\nnot a key\n")
        self.assertEqual(self.successResultOf(self.backend.state()).users, (KEY_B,))

    def test_reset_forces(self) -> None:
        """reset stops the proxy, deletes the flows and empties the keys file even if nothing is recorded."""
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))
        self.successResultOf(self.backend.reset())
        self.assertEqual(self.reactor.spawned[0].signals, ["TERM"])
        self.assertEqual(self.reactor.argvs[-1], ["ovs-ofctl", "del-flows", "br0", f"{COOKIE}/-1"])
        self.assertEqual(self.successResultOf(self.backend.state()), GatewayConfig())

    def test_switches_command(self) -> None:
        """With a switches command, getSws reports the datapath ids it prints."""
        self.table["switches"] = ["list-switches", "--bare"]
        self.reactor.stdout["list-switches"] = b'"0000000000000001"\n0000a0369f0b1c2d\n\n'
        backend = self.make()
        self.successResultOf(backend.start())
        self.assertEqual(self.successResultOf(backend.switches()), ["00:00:00:00:00:00:00:01", "00:00:a0:36:9f:0b:1c:2d"])
        self.assertEqual(self.reactor.argvs[-1], ["list-switches", "--bare"])
        self.reactor.stdout["list-switches"] = b"rm -rf /\n"
        self.assertEqual(self.failureResultOf(backend.switches(), GeniError).value.code, GeniCode.REFUSED)

    def test_missing_tool(self) -> None:
        """A tool missing from the path makes the call fail with REFUSED naming it."""
        os.unlink(os.path.join(self.tools, "ovs-ofctl"))
        failure = self.failureResultOf(self.backend.set_ovs({"10": "20"}), GeniError)
        self.assertEqual(failure.value.code, GeniCode.REFUSED)
        self.assertIn("'ovs-ofctl' not found", failure.value.output)

    def test_environment(self) -> None:
        """Commands get only the configured PATH and the C locale."""
        envs: list[Any] = []
        original = self.reactor.spawnProcess

        def spawn(protocol: Any, executable: str, args: list[str], env: Any = None, **kw: Any) -> Any:
            envs.append((executable, env))
            return original(protocol, executable, args, env, **kw)

        self.reactor.spawnProcess = spawn  # type: ignore[method-assign]
        self.successResultOf(self.backend.rem_ovs())
        self.assertEqual(envs, [(os.path.join(self.tools, "ovs-ofctl"), {"PATH": self.tools, "LC_ALL": "C"})])


class RealProcessTests(TestCase):
    """The command back end running the fake executable as real processes."""

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.tools = os.path.abspath(self.mktemp())
        os.makedirs(self.tools)
        for name in ("ovs-ofctl", "redir", "reload-keys"):
            os.symlink(FAKE_TOOL, os.path.join(self.tools, name))
        with open(os.path.join(self.tools, "redir.serve"), "w"):
            pass
        self.data = os.path.abspath(self.mktemp())
        settings = CommandSettings.from_config(
            {
                "path": self.tools + os.pathsep + os.path.dirname(sys.executable),
                "users-changed": [["reload-keys", "{authorized_keys}"]],
            },
            self.data,
        )
        self.backend = CommandBackend(StateFile(os.path.join(self.data, "state.json")), settings, reactor)
        self.addCleanup(self.backend.stop)
        return self.backend.start()

    def calls(self) -> list[list[str]]:
        try:
            with open(os.path.join(self.tools, "calls.jsonl")) as handle:
                return [json.loads(line) for line in handle]
        except FileNotFoundError:
            return []

    async def test_recorded_argv(self) -> None:
        """The tools receive exactly the argument lists, element by element."""
        await self.backend.set_ovs({"10": "0xffff"})
        await self.backend.set_user_auth((KEY_A,))
        self.assertEqual(
            self.calls(),
            [
                ["ovs-ofctl", "del-flows", "br0", f"{COOKIE}/-1"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=1,dl_vlan=10,actions=strip_vlan,output:2"],
                ["ovs-ofctl", "add-flow", "br0", f"{COOKIE},priority=100,in_port=2,vlan_tci=0x0000/0x1fff,actions=mod_vlan_vid:10,output:1"],
                ["reload-keys", os.path.join(self.data, "authorized_keys")],
            ],
        )

    def proxy_recorded(self) -> Deferred[None]:
        """Fire once the fake proxy has recorded its start (it has then installed its SIGTERM handler)."""
        from twisted.internet import reactor
        from twisted.internet.task import LoopingCall

        def check() -> None:
            if self.calls():
                loop.stop()

        loop = LoopingCall(check)
        loop.clock = reactor
        return loop.start(0.01).addTimeout(10, reactor).addCallback(lambda _: None)

    async def test_proxy_process(self) -> None:
        """The proxy runs as a process until remTCPProxy terminates it."""
        await self.backend.set_tcp_proxy("192.168.100.1:6633")
        state = await self.backend.state()
        self.assertEqual(state.proxy, "192.168.100.1:6633")
        await self.proxy_recorded()
        await self.backend.rem_tcp_proxy()
        calls = self.calls()
        self.assertEqual(calls[0], ["redir", "-n", ":6633", "192.168.100.1:6633"])
        self.assertIn(["redir", "terminated"], calls)

    async def test_failure_message(self) -> None:
        """A tool's exit status and first error line reach the caller as REFUSED."""
        with open(os.path.join(self.tools, "ovs-ofctl.exit"), "w") as handle:
            handle.write("2")
        with open(os.path.join(self.tools, "ovs-ofctl.stderr"), "w") as handle:
            handle.write("ovs-ofctl: br0 is not a bridge or a socket\n")
        d: Deferred[None] = self.backend.rem_ovs()
        error = await self.assertFailure(d, GeniError)
        self.assertEqual(error.code, GeniCode.REFUSED)
        self.assertEqual(error.output, "gateway command 'ovs-ofctl del-flows' failed (exit status 2): ovs-ofctl: br0 is not a bridge or a socket")
