# -*- test-case-name: tests.test_agent_command -*-
"""
The command back end: applies the gateway configuration with real tools.

Every command is an argument list, spawned without a shell. The commands
come from a configurable table of argv templates; an element of a template
is either literal text or exactly one placeholder such as C{{bridge}},
replaced by one whole value, so no value is ever spliced into a command
line. Values are computed from arguments already validated by
L{geniam.gatewayconfig} and from the agent's own configuration.

What each part does:
  - users: the SSH keys are written, atomically, to a dedicated
    C{authorized_keys} file; then the C{users-changed} commands run;
  - proxy: the C{proxy} command is a long-running process forwarding the
    gateway's controller port to the user's controller; the agent starts
    it, stops it with SIGTERM (SIGKILL after a grace period) and starts it
    again when the agent restarts;
  - VLANs: a new map is applied as a difference from the recorded one:
    C{vlan-remove} runs once per mapping that goes or changes (by default
    two C{ovs-ofctl del-flows} commands matching that mapping's flows) and
    C{vlan-add} once per mapping that is new or changed (two C{ovs-ofctl
    add-flow} commands, one per direction), so repeating a change does
    nothing and a retry after an interruption does only what is missing;
    C{vlan-clear} removes every flow the agent installed (they carry the
    agent's cookie), before a map is applied where none is recorded, and
    for removal and reset. With C{vlan-remove = []} every change clears and
    re-adds everything instead.

The applied state is recorded in a state file like the simulated back end's;
L{CommandBackend.state} reports the keys actually in the keys file and the
proxy only while its process runs, so drift shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from geniam.agent.backend import (
    DEFAULT_INVENTORY,
    BlockingRunner,
    GatewayState,
    IGatewayBackend,
    Inventory,
    StateFile,
    add_users,
    normalise_dpid,
    remove_users,
    write_atomically,
)
from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import UNTAGGED, format_controller, parse_controller, printable, string_values, validate_ssh_key

_PLACEHOLDER = re.compile(r"^\{([a-z_]+)\}$")
_BRIDGE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")
_OUTPUT_LIMIT = 64 * 1024

VLAN_CLEAR_VALUES = frozenset({"bridge", "cookie", "cookie_match"})
VLAN_ADD_VALUES = frozenset(
    {
        "bridge",
        "cookie",
        "testbed_port",
        "island_port",
        "testbed_vlan",
        "island_vlan",
        "flow_to_island",
        "flow_to_testbed",
        "match_to_island",
        "match_to_testbed",
    }
)
PROXY_VALUES = frozenset({"controller", "controller_host", "controller_port", "listen_port"})
USERS_VALUES = frozenset({"authorized_keys"})
SWITCHES_VALUES: frozenset[str] = frozenset()

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_COOKIE = 0x67656E69616D

KEYS_HEADER = "# Written by geniam-agent; every change replaces this file.\n"


@dataclass(frozen=True)
class CommandTemplate:
    """
    An argv template: literal elements and whole-element placeholders.

    @ivar argv: the template; C{argv[0]} is always literal.
    """

    argv: tuple[str, ...]

    @classmethod
    def parse(cls, value: object, allowed: frozenset[str], what: str) -> "CommandTemplate":
        """
        Check a template from configuration.

        @param allowed: the placeholder names this command may use.
        @param what: the table entry, for error messages.
        @raise ValueError: unless C{value} is a non-empty list of strings whose
            first element is literal and whose every element is either free of
            braces or exactly one allowed placeholder.
        """
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
            raise ValueError(f"command {what}: must be a non-empty list of non-empty strings")
        for index, element in enumerate(value):
            if "\x00" in element:
                raise ValueError(f"command {what}: element {index} contains a NUL byte")
            match = _PLACEHOLDER.match(element)
            if match:
                if index == 0:
                    raise ValueError(f"command {what}: the program name must be literal")
                if match.group(1) not in allowed:
                    names = ", ".join("{" + n + "}" for n in sorted(allowed)) or "none"
                    raise ValueError(f"command {what}: unknown placeholder {element}; this command may use {names}")
            elif "{" in element or "}" in element:
                raise ValueError(
                    f"command {what}: element {element!r} mixes text and a placeholder; a placeholder must be a whole element"
                )
        return cls(tuple(value))

    def render(self, values: Mapping[str, str]) -> list[str]:
        """Return the argv with each placeholder element replaced by its value."""
        result = []
        for element in self.argv:
            match = _PLACEHOLDER.match(element)
            result.append(values[match.group(1)] if match else element)
        return result


def _templates(value: object, allowed: frozenset[str], what: str) -> tuple[CommandTemplate, ...]:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"command {what}: must be a list of commands")
    return tuple(CommandTemplate.parse(v, allowed, f"{what}[{i}]") for i, v in enumerate(value))


DEFAULT_VLAN_CLEAR = (CommandTemplate(("ovs-ofctl", "del-flows", "{bridge}", "{cookie_match}")),)
DEFAULT_VLAN_ADD = (
    CommandTemplate(("ovs-ofctl", "add-flow", "{bridge}", "{flow_to_island}")),
    CommandTemplate(("ovs-ofctl", "add-flow", "{bridge}", "{flow_to_testbed}")),
)
DEFAULT_VLAN_REMOVE = (
    CommandTemplate(("ovs-ofctl", "del-flows", "{bridge}", "{match_to_island}")),
    CommandTemplate(("ovs-ofctl", "del-flows", "{bridge}", "{match_to_testbed}")),
)
DEFAULT_PROXY = CommandTemplate(("redir", "-n", "{listen_port}", "{controller}"))


@dataclass(frozen=True)
class CommandSettings:
    """
    The command back end's configuration (the C{[command]} table of the agent's TOML file).

    @ivar bridge: the Open vSwitch bridge joining the testbed and the island.
    @ivar testbed_port: the OpenFlow port towards the testbed.
    @ivar island_port: the OpenFlow port towards the island.
    @ivar cookie: the flow cookie marking the agent's flows.
    @ivar listen_port: the gateway's controller port the proxy listens on,
        given to the proxy command as C{:PORT}.
    @ivar authorized_keys: the keys file the agent owns and rewrites.
    @ivar path: the directories searched for commands named without a C{/}.
    @ivar timeout: seconds a one-shot command may run before it is killed.
    @ivar stop_grace: seconds between SIGTERM and SIGKILL for the proxy.
    """

    authorized_keys: str
    bridge: str = "br0"
    testbed_port: int = 1
    island_port: int = 2
    cookie: int = DEFAULT_COOKIE
    listen_port: int = 6633
    path: str = DEFAULT_PATH
    timeout: float = 30.0
    stop_grace: float = 5.0
    vlan_clear: tuple[CommandTemplate, ...] = DEFAULT_VLAN_CLEAR
    vlan_add: tuple[CommandTemplate, ...] = DEFAULT_VLAN_ADD
    vlan_remove: tuple[CommandTemplate, ...] = DEFAULT_VLAN_REMOVE
    proxy: CommandTemplate = DEFAULT_PROXY
    users_changed: tuple[CommandTemplate, ...] = ()
    switches: CommandTemplate | None = None

    @classmethod
    def from_config(cls, table: Mapping[str, Any], data_dir: str, base_dir: str = ".") -> "CommandSettings":
        """
        Build settings from a configuration table with dash- or underscore-separated keys.

        @param data_dir: where the keys file goes when C{authorized-keys} is not given.
        @param base_dir: what relative paths in C{table} are relative to.
        @raise ValueError: for unknown keys or bad values.
        """
        values = {str(k).replace("-", "_"): v for k, v in table.items()}
        known = {f.name for f in cls.__dataclass_fields__.values()}  # type: ignore[attr-defined]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown command settings: {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        keys_path = values.get("authorized_keys", os.path.join(data_dir, "authorized_keys"))
        if not isinstance(keys_path, str) or not keys_path:
            raise ValueError("command authorized-keys must be a path")
        kwargs["authorized_keys"] = os.path.abspath(os.path.join(base_dir, keys_path))
        if "bridge" in values:
            if not isinstance(values["bridge"], str) or not _BRIDGE.match(values["bridge"]):
                raise ValueError("command bridge must be an interface name (letters, digits, . _ -; at most 15)")
            kwargs["bridge"] = values["bridge"]
        for name, low, high in (("testbed_port", 1, 0xFFFFFF00), ("island_port", 1, 0xFFFFFF00), ("listen_port", 1, 65535)):
            if name in values:
                value = values[name]
                if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                    raise ValueError(f"command {name.replace('_', '-')} must be an integer {low}-{high}")
                kwargs[name] = value
        if "cookie" in values:
            cookie = values["cookie"]
            try:
                number = int(cookie, 0) if isinstance(cookie, str) else cookie
            except ValueError:
                number = None
            if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 2**64:
                raise ValueError("command cookie must be a non-zero 64-bit integer (e.g. '0x67656e69')")
            kwargs["cookie"] = number
        if "path" in values:
            if not isinstance(values["path"], str) or "\x00" in values["path"]:
                raise ValueError("command path must be a ':'-separated list of directories")
            kwargs["path"] = values["path"]
        for name in ("timeout", "stop_grace"):
            if name in values:
                value = values[name]
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 3600:
                    raise ValueError(f"command {name.replace('_', '-')} must be seconds, 0-3600")
                kwargs[name] = float(value)
        if "vlan_clear" in values:
            kwargs["vlan_clear"] = _templates(values["vlan_clear"], VLAN_CLEAR_VALUES, "vlan-clear")
        if "vlan_add" in values:
            kwargs["vlan_add"] = _templates(values["vlan_add"], VLAN_ADD_VALUES, "vlan-add")
        if "vlan_remove" in values:
            kwargs["vlan_remove"] = _templates(values["vlan_remove"], VLAN_ADD_VALUES, "vlan-remove")
        if "users_changed" in values:
            kwargs["users_changed"] = _templates(values["users_changed"], USERS_VALUES, "users-changed")
        if "proxy" in values:
            kwargs["proxy"] = CommandTemplate.parse(values["proxy"], PROXY_VALUES, "proxy")
        if "switches" in values:
            kwargs["switches"] = CommandTemplate.parse(values["switches"], SWITCHES_VALUES, "switches")
        return cls(**kwargs)

    def vlan_values(self, testbed_vlan: str, island_vlan: str) -> dict[str, str]:
        """
        The values a C{vlan-add} command may use for one mapping.

        C{flow_to_island} matches the testbed VLAN on the testbed port and
        rewrites it (or strips it, for C{0xffff}); C{flow_to_testbed} is the
        reverse direction. C{match_to_island} and C{match_to_testbed} match
        exactly those two flows (with the agent's cookie), for C{vlan-remove}.
        """
        cookie = f"cookie={self.cookie:#x}"
        tp, ip, t = self.testbed_port, self.island_port, int(testbed_vlan)
        from_testbed = f"in_port={tp},dl_vlan={t}"
        if island_vlan == UNTAGGED:
            from_island = f"in_port={ip},vlan_tci=0x0000/0x1fff"
            to_island = f"{cookie},priority=100,{from_testbed},actions=strip_vlan,output:{ip}"
            to_testbed = f"{cookie},priority=100,{from_island},actions=mod_vlan_vid:{t},output:{tp}"
        else:
            i = int(island_vlan)
            from_island = f"in_port={ip},dl_vlan={i}"
            to_island = f"{cookie},priority=100,{from_testbed},actions=mod_vlan_vid:{i},output:{ip}"
            to_testbed = f"{cookie},priority=100,{from_island},actions=mod_vlan_vid:{t},output:{tp}"
        return dict(
            self.clear_values(),
            testbed_port=str(tp),
            island_port=str(ip),
            testbed_vlan=str(t),
            island_vlan=island_vlan,
            flow_to_island=to_island,
            flow_to_testbed=to_testbed,
            match_to_island=f"{cookie}/-1,{from_testbed}",
            match_to_testbed=f"{cookie}/-1,{from_island}",
        )

    def clear_values(self) -> dict[str, str]:
        """The values a C{vlan-clear} command may use."""
        return {"bridge": self.bridge, "cookie": f"{self.cookie:#x}", "cookie_match": f"cookie={self.cookie:#x}/-1"}

    def proxy_values(self, controller: str) -> dict[str, str]:
        """The values the C{proxy} command may use for C{controller} (re-formatted from its parts)."""
        host, port = parse_controller(controller)
        return {
            "controller": format_controller(host, port),
            "controller_host": host,
            "controller_port": str(port),
            "listen_port": f":{self.listen_port}",
        }


def find_executable(name: str, path: str) -> str:
    """
    Resolve a program name against C{path} (names containing C{/} are used as given).

    @raise GeniError: REFUSED if no executable file is found.
    """
    if "/" in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
    else:
        for directory in path.split(os.pathsep):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    raise GeniError(GeniCode.REFUSED, f"gateway command {name!r} not found on the agent's PATH")


class _Collector(ProcessProtocol):
    """Keeps the first bytes of a process's output and fires when it ends."""

    def __init__(self, on_end: Callable[["_Collector", Failure], None] | None = None) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.reason: Failure | None = None
        self.ended: Deferred[None] = Deferred()
        self._on_end = on_end

    def outReceived(self, data: bytes) -> None:
        self.out += data[: max(0, _OUTPUT_LIMIT - len(self.out))]

    def errReceived(self, data: bytes) -> None:
        self.err += data[: max(0, _OUTPUT_LIMIT - len(self.err))]

    def processEnded(self, reason: Failure) -> None:
        self.reason = reason
        if self._on_end is not None:
            self._on_end(self, reason)
        self.ended.callback(None)


def _describe_end(reason: Failure) -> str:
    value = reason.value
    if isinstance(value, ProcessTerminated):
        if value.signal is not None:
            return f"killed by signal {value.signal}"
        return f"exit status {value.exitCode}"
    return "exit status 0"


def _first_line(data: bytes) -> str:
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip():
            return line.strip()[:200]
    return ""


@implementer(IGatewayBackend)
class CommandBackend:
    """
    An L{IGatewayBackend} that configures the gateway with external tools.
    """

    log = Logger()

    def __init__(
        self,
        state_file: StateFile,
        settings: CommandSettings,
        reactor: Any,
        inventory: Inventory = DEFAULT_INVENTORY,
        runner: BlockingRunner | None = None,
    ) -> None:
        """
        @param state_file: where the applied state is recorded.
        @param settings: the commands and their parameters.
        @param reactor: an L{IReactorProcess} and L{IReactorTime} provider.
        @param inventory: the switches and links reported when no
            C{switches} command is configured (links always come from here).
        @param runner: where blocking file operations run.
        """
        self._file = state_file
        self._settings = settings
        self._reactor: IReactorProcess = reactor
        self._clock: IReactorTime = reactor
        self._inventory = inventory
        self._runner = runner or BlockingRunner()
        self._recorded = GatewayState()
        self._proxy: _Collector | None = None
        self._proxy_controller = ""
        self._proxy_transport: Any = None

    # Processes

    def _spawn(self, argv: Sequence[str], protocol: _Collector) -> Any:
        args = string_values(argv)
        executable = find_executable(args[0], self._settings.path)
        env = {"PATH": self._settings.path, "LC_ALL": "C"}
        return self._reactor.spawnProcess(protocol, executable, args, env=env)

    async def _run(self, argv: list[str]) -> bytes:
        """Run one command to completion; fire with its standard output."""
        protocol = _Collector()
        transport = self._spawn(argv, protocol)
        self.log.debug("running {argv}", argv=tuple(argv))
        timer: IDelayedCall = self._clock.callLater(self._settings.timeout, self._kill, transport)
        try:
            await protocol.ended
        finally:
            if timer.active():
                timer.cancel()
        reason = protocol.reason
        assert reason is not None
        if not reason.check(ProcessDone):
            detail = _first_line(bytes(protocol.err)) or _first_line(bytes(protocol.out))
            what = " ".join(argv[:2])
            message = f"gateway command {what!r} failed ({_describe_end(reason)})" + (f": {printable(detail)}" if detail else "")
            self.log.warn("{message}", message=message)
            raise GeniError(GeniCode.REFUSED, message)
        return bytes(protocol.out)

    @staticmethod
    def _kill(transport: Any) -> None:
        try:
            transport.signalProcess("KILL")
        except Exception:
            pass

    async def _run_all(self, templates: Sequence[CommandTemplate], values: Mapping[str, str]) -> None:
        for template in templates:
            await self._run(template.render(values))

    def _proxy_ended(self, protocol: _Collector, reason: Failure) -> None:
        if protocol is self._proxy:
            detail = _first_line(bytes(protocol.err))
            self.log.warn(
                "proxy to {controller} ended ({how}){detail}",
                controller=self._proxy_controller,
                how=_describe_end(reason),
                detail=f": {printable(detail)}" if detail else "",
            )
            self._proxy = None
            self._proxy_controller = ""
            self._proxy_transport = None

    async def _start_proxy(self, controller: str) -> None:
        argv = self._settings.proxy.render(self._settings.proxy_values(controller))
        protocol = _Collector(self._proxy_ended)
        transport = self._spawn(argv, protocol)
        self._proxy, self._proxy_controller, self._proxy_transport = protocol, controller, transport
        self.log.info("proxy to {controller} started: {argv}", controller=controller, argv=tuple(argv))

    async def _stop_proxy(self) -> None:
        protocol, transport = self._proxy, self._proxy_transport
        if protocol is None:
            return
        self._proxy, self._proxy_controller, self._proxy_transport = None, "", None
        try:
            transport.signalProcess("TERM")
        except Exception:
            pass
        timer = self._clock.callLater(self._settings.stop_grace, self._kill, transport)
        try:
            await protocol.ended
        finally:
            if timer.active():
                timer.cancel()

    # Users

    def _write_keys(self, users: tuple[str, ...]) -> None:
        path = self._settings.authorized_keys
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            write_atomically(path, (KEYS_HEADER + "".join(k + "\n" for k in users)).encode("utf-8"), 0o600)
        except OSError as e:
            raise GeniError(GeniCode.REFUSED, f"cannot write the gateway's keys file: {e.strerror}") from None

    def _read_keys(self) -> tuple[str, ...]:
        try:
            with open(self._settings.authorized_keys, encoding="utf-8", errors="replace") as handle:
                lines = handle.read(4 * 1024 * 1024).splitlines()
        except FileNotFoundError:
            return ()
        except OSError as e:
            raise GeniError(GeniCode.REFUSED, f"cannot read the gateway's keys file: {e.strerror}") from None
        keys = []
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    keys.append(validate_ssh_key(line))
                except GeniError:
                    self.log.warn("ignoring a malformed line in the gateway's keys file")
        return tuple(dict.fromkeys(keys))

    async def _apply_users(self, users: tuple[str, ...]) -> None:
        await self._runner.run(self._write_keys, users)
        await self._run_all(self._settings.users_changed, {"authorized_keys": self._settings.authorized_keys})

    # Recording

    async def _record(self, state: GatewayState) -> None:
        if state != self._recorded:
            await self._file.save(state)
            self._recorded = state

    # IGatewayBackend

    def start(self) -> "Deferred[None]":
        """Load the recorded state, rewrite the keys file if it differs from it and start the recorded proxy."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        self._recorded = self._file.load()
        if await self._runner.run(self._read_keys) != self._recorded.users:
            await self._apply_users(self._recorded.users)
        if self._recorded.proxy:
            await self._start_proxy(self._recorded.proxy)

    def stop(self) -> "Deferred[None]":
        """Stop the proxy process (it is started again by L{start})."""
        return Deferred.fromCoroutine(self._stop_proxy())

    def switches(self) -> "Deferred[list[str]]":
        """Fire with the DPIDs listed by the C{switches} command, or the inventory's."""
        return Deferred.fromCoroutine(self._switches())

    async def _switches(self) -> list[str]:
        if self._settings.switches is None:
            return list(self._inventory.switches)
        output = await self._run(self._settings.switches.render({}))
        dpids = []
        for line in output.decode("ascii", "replace").splitlines():
            if line.strip():
                try:
                    dpids.append(normalise_dpid(line))
                except ValueError:
                    raise GeniError(GeniCode.REFUSED, f"the switches command printed {line.strip()[:40]!r}, not a datapath id") from None
        return list(dict.fromkeys(dpids))

    def links(self) -> "Deferred[list[str]]":
        """Fire with the inventory's links."""
        return Deferred.fromCoroutine(self._links())

    async def _links(self) -> list[str]:
        return list(self._inventory.links)

    def set_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Add C{keys} to the keys file."""
        return Deferred.fromCoroutine(self._change_users(lambda s: add_users(s, keys)))

    def rem_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Remove C{keys} from the keys file."""
        return Deferred.fromCoroutine(self._change_users(lambda s: remove_users(s, keys)))

    async def _change_users(self, change: Callable[[GatewayState], GatewayState]) -> None:
        current = await self._runner.run(self._read_keys)
        base = GatewayState(current, self._recorded.proxy, self._recorded.vlans)
        new = change(base)
        if new.users != current:
            await self._apply_users(new.users)
        await self._record(new)

    def set_tcp_proxy(self, controller: str) -> "Deferred[None]":
        """Run the proxy to C{controller}, replacing any other."""
        return Deferred.fromCoroutine(self._set_proxy(controller))

    async def _set_proxy(self, controller: str) -> None:
        r = self._recorded
        if self._proxy is None or self._proxy_controller != controller:
            await self._stop_proxy()
            try:
                await self._start_proxy(controller)
            except GeniError:
                await self._record(GatewayState(r.users, "", r.vlans))
                raise
        await self._record(GatewayState(r.users, controller, r.vlans))

    def rem_tcp_proxy(self) -> "Deferred[None]":
        """Stop the proxy."""
        return Deferred.fromCoroutine(self._rem_proxy())

    async def _rem_proxy(self) -> None:
        await self._stop_proxy()
        r = self._recorded
        await self._record(GatewayState(r.users, "", r.vlans))

    def set_ovs(self, vlan_map: Mapping[str, str]) -> "Deferred[None]":
        """Replace the agent's flows with those for C{vlan_map}."""
        return Deferred.fromCoroutine(self._set_vlans(dict(vlan_map)))

    async def _set_vlans(self, vlan_map: dict[str, str]) -> None:
        old = dict(self._recorded.vlans)
        if vlan_map == old:
            return
        if not old or not self._settings.vlan_remove:
            await self._replace_vlans(vlan_map)
            return
        applied = dict(old)
        try:
            for testbed in sorted((t for t in old if vlan_map.get(t) != old[t]), key=int):
                await self._run_all(self._settings.vlan_remove, self._settings.vlan_values(testbed, old[testbed]))
                del applied[testbed]
            for testbed in sorted((t for t in vlan_map if applied.get(t) != vlan_map[t]), key=int):
                values = self._settings.vlan_values(testbed, vlan_map[testbed])
                try:
                    await self._run_all(self._settings.vlan_add, values)
                except GeniError:
                    await self._undo_add(values)
                    raise
                applied[testbed] = vlan_map[testbed]
        finally:
            r = self._recorded
            await self._record(GatewayState(r.users, r.proxy, applied))

    async def _undo_add(self, values: Mapping[str, str]) -> None:
        for template in self._settings.vlan_remove:
            try:
                await self._run(template.render(values))
            except GeniError:
                self.log.warn("could not remove a half-added VLAN mapping's flow")

    async def _replace_vlans(self, vlan_map: dict[str, str]) -> None:
        try:
            await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
            for testbed in sorted(vlan_map, key=int):
                await self._run_all(self._settings.vlan_add, self._settings.vlan_values(testbed, vlan_map[testbed]))
        except GeniError:
            await self._clear_after_failure()
            raise
        r = self._recorded
        await self._record(GatewayState(r.users, r.proxy, vlan_map))

    async def _clear_after_failure(self) -> None:
        r = self._recorded
        try:
            await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        except GeniError:
            self.log.warn("could not clear the VLAN flows after a failed change")
        await self._record(GatewayState(r.users, r.proxy, {}))

    def rem_ovs(self) -> "Deferred[None]":
        """Remove the agent's flows."""
        return Deferred.fromCoroutine(self._rem_vlans())

    async def _rem_vlans(self) -> None:
        await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        r = self._recorded
        await self._record(GatewayState(r.users, r.proxy, {}))

    def reset(self) -> "Deferred[None]":
        """Stop the proxy, remove the agent's flows and empty the keys file, whatever is recorded."""
        return Deferred.fromCoroutine(self._reset())

    async def _reset(self) -> None:
        await self._stop_proxy()
        await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        await self._apply_users(())
        await self._record(GatewayState())

    def state(self) -> "Deferred[GatewayState]":
        """Fire with the keys in the keys file, the running proxy and the recorded VLAN map."""
        return Deferred.fromCoroutine(self._state())

    async def _state(self) -> GatewayState:
        users = await self._runner.run(self._read_keys)
        proxy = self._proxy_controller if self._proxy is not None else ""
        return GatewayState(users, proxy, dict(self._recorded.vlans))
