"""
Tests for L{geniam.agent.backend} and the back ends, with fake processes.

One contract mixin runs on both back ends: the simulated one, and the
command back end over a fake process reactor (every command succeeds at
once; the proxy runs until signalled).
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.internet.defer import fail
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from geniam.agent.backend import StateFile, StateFileError, write_atomically
from geniam.gateway.config import MAX_GATEWAY_KEY_CHARS as MAX_USER_BYTES
from geniam.gateway.config import MAX_GATEWAY_KEYS as MAX_USERS
from geniam.gateway.config import GatewayConfig
from geniam.gateway.inventory import DEFAULT_INVENTORY, Inventory, normalise_dpid, normalise_link
from geniam.interfaces import IGatewayBackend
from geniam.agent.backends.command import CommandBackend
from geniam.agent.backends.commandsettings import CommandSettings
from geniam.agent.backends.simulated import SimulatedBackend
from geniam.errors import GeniCode, GeniError

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyAlice alice@example"
KEY_B = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeyBob bob@example"
KEY_C = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC carol"


class FakeProcessTransport:
    """A process that has been spawned by L{FakeProcessReactor}."""

    def __init__(self, reactor: "FakeProcessReactor", protocol: Any, argv: list[str]) -> None:
        self.reactor = reactor
        self.protocol = protocol
        self.argv = argv
        self.signals: list[str] = []
        self.ended = False

    def end(self, reason: Failure) -> None:
        """End the process with C{reason}."""
        if not self.ended:
            self.ended = True
            self.protocol.processEnded(reason)

    def signalProcess(self, name: str) -> None:
        """Record the signal; TERM and KILL end the process."""
        self.signals.append(name)
        if name in ("TERM", "KILL") and self.reactor.obey_signals:
            self.end(Failure(ProcessTerminated(signal=15 if name == "TERM" else 9)))


class FakeProcessReactor(Clock):
    """
    A clock that records spawned processes instead of running them.

    One-shot commands end at once with C{exit_codes.get(name, 0)} (and
    C{stderr.get(name)} on standard error); programs named in C{daemons}
    run until signalled; programs in C{hang} never end by themselves; with
    C{fail_matching} set, a command with an argument containing it exits 1.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[FakeProcessTransport] = []
        self.exit_codes: dict[str, int] = {}
        self.stderr: dict[str, bytes] = {}
        self.stdout: dict[str, bytes] = {}
        self.daemons = {"redir"}
        self.hang: set[str] = set()
        self.obey_signals = True
        self.fail_matching: str | None = None

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any = None, **kw: Any) -> FakeProcessTransport:
        transport = FakeProcessTransport(self, protocol, list(args))
        self.spawned.append(transport)
        protocol.makeConnection(transport)
        name = os.path.basename(args[0])
        if name in self.daemons or name in self.hang:
            return transport
        if name in self.stdout:
            protocol.outReceived(self.stdout[name])
        if name in self.stderr:
            protocol.errReceived(self.stderr[name])
        code = self.exit_codes.get(name, 0)
        if self.fail_matching is not None and any(self.fail_matching in arg for arg in args):
            code = 1
        transport.end(Failure(ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)))
        return transport

    @property
    def argvs(self) -> list[list[str]]:
        """Every spawned argv, in order."""
        return [t.argv for t in self.spawned]


def make_tool_dir(test: SynchronousTestCase, names: tuple[str, ...] = ("ovs-ofctl", "redir", "reload-keys", "list-switches")) -> str:
    """A directory with an executable file for each name (the fake reactor never runs them)."""
    directory = test.mktemp()
    os.makedirs(directory)
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "w") as handle:
            handle.write("#!/bin/sh\nexit 0\n")
        os.chmod(path, 0o755)
    return directory


class GatewayBackendContract:
    """The behaviour every L{IGatewayBackend} shares; mixed into a SynchronousTestCase."""

    def make_backend(self, path: str) -> Any:
        """Return a back end persisting to C{path}."""
        raise AssertionError("a contract test case must define make_backend")

    def setUp(self) -> None:
        self.path = os.path.join(self.mktemp(), "state.json")  # type: ignore[attr-defined]
        self.backend = self.make_backend(self.path)
        self.successResultOf(self.backend.start())  # type: ignore[attr-defined]

    def state(self, backend: Any = None) -> GatewayConfig:
        return self.successResultOf((backend or self.backend).state())  # type: ignore[attr-defined, no-any-return]

    def test_interface(self) -> None:
        """The back end provides IGatewayBackend."""
        self.assertTrue(verifyObject(IGatewayBackend, self.backend))  # type: ignore[attr-defined]

    def test_starts_empty(self) -> None:
        """A fresh back end has nothing applied."""
        self.assertEqual(self.state(), GatewayConfig())  # type: ignore[attr-defined]

    def test_inventory(self) -> None:
        """Switches and links are the inventory's."""
        self.assertEqual(self.successResultOf(self.backend.switches()), list(DEFAULT_INVENTORY.switches))  # type: ignore[attr-defined]
        self.assertEqual(self.successResultOf(self.backend.links()), list(DEFAULT_INVENTORY.links))  # type: ignore[attr-defined]

    def test_users_added_and_removed(self) -> None:
        """setUserAuth adds keys (no duplicates, order kept); remUserAuth removes only the named ones."""
        self.successResultOf(self.backend.set_user_auth((KEY_A, KEY_B)))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_user_auth((KEY_B, KEY_C)))  # type: ignore[attr-defined]
        self.assertEqual(self.state().users, (KEY_A, KEY_B, KEY_C))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_user_auth((KEY_B,)))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_user_auth((KEY_B,)))  # type: ignore[attr-defined]
        self.assertEqual(self.state().users, (KEY_A, KEY_C))  # type: ignore[attr-defined]

    def test_proxy_set_replaced_removed(self) -> None:
        """setTCPProxy replaces the controller; remTCPProxy clears it, twice without error."""
        self.successResultOf(self.backend.set_tcp_proxy("192.168.100.1:6633"))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_tcp_proxy("192.168.100.1:6633"))  # type: ignore[attr-defined]
        self.assertEqual(self.state().proxy, "192.168.100.1:6633")  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_tcp_proxy("ctl.example.org:6653"))  # type: ignore[attr-defined]
        self.assertEqual(self.state().proxy, "ctl.example.org:6653")  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_tcp_proxy())  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_tcp_proxy())  # type: ignore[attr-defined]
        self.assertEqual(self.state().proxy, "")  # type: ignore[attr-defined]

    def test_vlans_set_and_removed(self) -> None:
        """setOvs replaces the VLAN map; remOvs clears it, twice without error."""
        self.successResultOf(self.backend.set_ovs({"10": "0xffff", "30": "20"}))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_ovs({"10": "0xffff", "30": "20"}))  # type: ignore[attr-defined]
        self.assertEqual(dict(self.state().vlans), {"10": "0xffff", "30": "20"})  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_ovs({"40": "41"}))  # type: ignore[attr-defined]
        self.assertEqual(dict(self.state().vlans), {"40": "41"})  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_ovs())  # type: ignore[attr-defined]
        self.successResultOf(self.backend.rem_ovs())  # type: ignore[attr-defined]
        self.assertEqual(dict(self.state().vlans), {})  # type: ignore[attr-defined]

    def test_reset(self) -> None:
        """reset restores the default configuration."""
        self.successResultOf(self.backend.set_user_auth((KEY_A,)))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_ovs({"10": "20"}))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.reset())  # type: ignore[attr-defined]
        self.successResultOf(self.backend.reset())  # type: ignore[attr-defined]
        self.assertEqual(self.state(), GatewayConfig())  # type: ignore[attr-defined]

    def test_survives_restart(self) -> None:
        """A new back end on the same state file reports what the old one had applied."""
        self.successResultOf(self.backend.set_user_auth((KEY_A,)))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_tcp_proxy("10.0.0.1:6633"))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.set_ovs({"10": "0xffff"}))  # type: ignore[attr-defined]
        self.successResultOf(self.backend.stop())  # type: ignore[attr-defined]
        again = self.make_backend(self.path)
        self.successResultOf(again.start())  # type: ignore[attr-defined]
        self.assertEqual(self.state(again), GatewayConfig((KEY_A,), "10.0.0.1:6633", {"10": "0xffff"}))  # type: ignore[attr-defined]

    def test_user_limit(self) -> None:
        """Keys beyond the gateway's limit are refused and nothing changes."""
        keys = tuple(f"ssh-ed25519 AAAA{i:04d}" for i in range(MAX_USERS + 1))
        for start in range(0, MAX_USERS, 64):
            self.successResultOf(self.backend.set_user_auth(keys[start:start + 64]))  # type: ignore[attr-defined]
        failure = self.failureResultOf(self.backend.set_user_auth(keys[MAX_USERS:]), GeniError)  # type: ignore[attr-defined]
        self.assertEqual(failure.value.code, GeniCode.REFUSED)  # type: ignore[attr-defined]
        self.assertEqual(len(self.state().users), MAX_USERS)  # type: ignore[attr-defined]


class SimulatedBackendTests(GatewayBackendContract, SynchronousTestCase):
    """The contract on the simulated back end."""

    def make_backend(self, path: str) -> SimulatedBackend:
        return SimulatedBackend(StateFile(path))

    def test_state_file_written_atomically(self) -> None:
        """Each change leaves a complete JSON file and no temporary files beside it."""
        self.successResultOf(self.backend.set_user_auth((KEY_A,)))
        self.successResultOf(self.backend.set_ovs({"5": "6"}))
        with open(self.path) as handle:
            data = json.load(handle)
        self.assertEqual(data, {"version": 1, "users": [KEY_A], "proxy": "", "vlans": {"5": "6"}})
        self.assertEqual(os.listdir(os.path.dirname(self.path)), ["state.json"])
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)

    def test_no_write_when_unchanged(self) -> None:
        """An idempotent repeat does not rewrite the state file."""
        saves: list[GatewayConfig] = []
        state_file = StateFile(self.path)
        original = state_file.save
        state_file.save = lambda s: (saves.append(s), original(s))[1]  # type: ignore[method-assign]
        backend = SimulatedBackend(state_file)
        self.successResultOf(backend.start())
        self.successResultOf(backend.set_tcp_proxy("10.0.0.1:6633"))
        self.successResultOf(backend.set_tcp_proxy("10.0.0.1:6633"))
        self.successResultOf(backend.rem_ovs())
        self.assertEqual(len(saves), 1)

    def test_failed_save_changes_nothing(self) -> None:
        """If the state cannot be saved the call fails and the state stays as it was."""
        state_file = StateFile(self.path)
        state_file.save = lambda s: fail(OSError(28, "No space left on device"))  # type: ignore[method-assign]
        backend = SimulatedBackend(state_file)
        self.successResultOf(backend.start())
        self.failureResultOf(backend.set_tcp_proxy("10.0.0.1:6633"), OSError)
        self.assertEqual(self.successResultOf(backend.state()), GatewayConfig())

    def test_custom_inventory(self) -> None:
        """The simulated back end reports the inventory it was configured with."""
        inventory = Inventory.from_config(["0000000000000001", "0x00000000000000AA"], ["00:00:00:00:00:00:00:01:5-00:00:00:00:00:00:00:aa:7"])
        backend = SimulatedBackend(StateFile(self.path), inventory)
        self.assertEqual(self.successResultOf(backend.switches()), ["00:00:00:00:00:00:00:01", "00:00:00:00:00:00:00:aa"])
        self.assertEqual(self.successResultOf(backend.links()), ["00:00:00:00:00:00:00:01:5-00:00:00:00:00:00:00:aa:7"])


class CommandBackendContractTests(GatewayBackendContract, SynchronousTestCase):
    """The contract on the command back end, over fake processes."""

    def make_backend(self, path: str) -> CommandBackend:
        if not hasattr(self, "reactor"):
            self.reactor = FakeProcessReactor()
            self.tools = make_tool_dir(self)
        settings = CommandSettings.from_config({"path": self.tools}, os.path.dirname(path))
        return CommandBackend(StateFile(path), settings, self.reactor)


class StateFileTests(SynchronousTestCase):
    """Reading and writing the state file."""

    def test_missing_is_default(self) -> None:
        """No file means nothing applied."""
        self.assertEqual(StateFile(os.path.join(self.mktemp(), "s.json")).load(), GatewayConfig())

    def test_round_trip(self) -> None:
        """What is saved is loaded."""
        path = os.path.join(self.mktemp(), "s.json")
        state = GatewayConfig((KEY_A, KEY_B), "[2001:db8::1]:6633", {"10": "0xffff"})
        self.successResultOf(StateFile(path).save(state))
        self.assertEqual(StateFile(path).load(), state)

    def test_malformed_refused(self) -> None:
        """A malformed or tampered file is an error naming the file, not an empty state."""
        directory = self.mktemp()
        os.makedirs(directory)
        for content in (b"{", b"[]", b'{"version": 2}', b'{"version": 1, "proxy": "evil;rm -rf /"}', b'{"version": 1, "users": ["a\\nb"]}'):
            path = os.path.join(directory, "s.json")
            with open(path, "wb") as handle:
                handle.write(content)
            error = self.assertRaises(StateFileError, StateFile(path).load)
            self.assertIn(path, str(error))

    def test_write_atomically_replaces(self) -> None:
        """write_atomically replaces the content and leaves only the target file."""
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "f")
        write_atomically(path, b"one")
        write_atomically(path, b"two", 0o640)
        with open(path, "rb") as handle:
            self.assertEqual(handle.read(), b"two")
        self.assertEqual(os.listdir(directory), ["f"])
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o640)


class GatewayConfigTests(SynchronousTestCase):
    """The wire form of the applied state."""

    def test_to_and_from_wire(self) -> None:
        """The wire form is plain data and reads back normalised."""
        wire = {"users": [KEY_A], "proxy": "10.0.0.1:6633", "vlans": {"010": "0xFFFF"}}
        state = GatewayConfig.from_wire(wire)
        self.assertEqual(state.to_wire(), {"users": [KEY_A], "proxy": "10.0.0.1:6633", "vlans": {"10": "0xffff"}})

    def test_from_wire_refuses(self) -> None:
        """Unknown fields, bad keys, proxies and VLANs are refused with BADARGS."""
        for bad in (
            [],
            {"users": "x"},
            {"extra": 1},
            {"users": [KEY_A + "\nssh-rsa AAAA"]},
            {"proxy": "1.2.3.4:0"},
            {"proxy": None},
            {"vlans": {"5000": "1"}},
        ):
            error = self.assertRaises(GeniError, GatewayConfig.from_wire, bad)
            self.assertEqual(error.code, GeniCode.BADARGS, bad)

    def test_user_bytes_limit(self) -> None:
        """The total size of the keys is limited so the state fits a PB message."""
        big = ["ssh-rsa " + "A" * 4000 + f" k{i}" for i in range(MAX_USER_BYTES // 4000 + 1)]
        error = self.assertRaises(GeniError, GatewayConfig.from_wire, {"users": big})
        self.assertEqual(error.code, GeniCode.REFUSED)


class InventoryTests(SynchronousTestCase):
    """Datapath ids, links and the inventory."""

    def test_dpid_forms(self) -> None:
        """Colon, plain and 0x forms normalise to lower-case colon form."""
        for text in ("00:00:00:00:00:00:0A:01", "0000000000000a01", "0x0000000000000A01", '"0000000000000a01"'):
            self.assertEqual(normalise_dpid(text), "00:00:00:00:00:00:0a:01")
        for bad in ("", "00:00", "zz00000000000000", 5, "00:00:00:00:00:00:00:01;x"):
            self.assertRaises(ValueError, normalise_dpid, bad)

    def test_links(self) -> None:
        """Links are DPID:port-DPID:port with ports 1 and up."""
        self.assertEqual(
            normalise_link("00:00:00:00:00:00:00:01:1-0000000000000002:2"),
            "00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:02:2",
        )
        for bad in ("a-b", "00:00:00:00:00:00:00:01:0-00:00:00:00:00:00:00:02:1", "00:00:00:00:00:00:00:01:1", 7):
            self.assertRaises(ValueError, normalise_link, bad)

    def test_link_to_unknown_switch(self) -> None:
        """A link must join switches of the inventory."""
        self.assertRaises(ValueError, Inventory.from_config, ["0000000000000001"], ["00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:09:1"])

    def test_default_inventory_consistent(self) -> None:
        """The default inventory passes its own checks."""
        self.assertEqual(Inventory.from_config(list(DEFAULT_INVENTORY.switches), list(DEFAULT_INVENTORY.links)), DEFAULT_INVENTORY)
