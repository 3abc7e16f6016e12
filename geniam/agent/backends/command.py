# -*- test-case-name: tests.agent.backends.test_command -*-
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
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from geniam.agent.backend import BlockingRunner, StateFile, write_atomically
from geniam.errors import GeniCode, GeniError
from geniam.gateway.config import GatewayConfig
from geniam.gateway.inventory import DEFAULT_INVENTORY, Inventory, normalise_dpid
from geniam.interfaces import IGatewayBackend
from geniam.agent.backends.commandsettings import KEYS_HEADER, CommandSettings, CommandTemplate, find_executable
from geniam.gatewayconfig import printable, string_values, validate_ssh_key

_OUTPUT_LIMIT = 64 * 1024

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
        self._recorded = GatewayConfig()
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

    async def _record(self, state: GatewayConfig) -> None:
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
        return Deferred.fromCoroutine(self._change_users(lambda s: s.with_users(keys)))

    def rem_user_auth(self, keys: tuple[str, ...]) -> "Deferred[None]":
        """Remove C{keys} from the keys file."""
        return Deferred.fromCoroutine(self._change_users(lambda s: s.without_users(keys)))

    async def _change_users(self, change: Callable[[GatewayConfig], GatewayConfig]) -> None:
        current = await self._runner.run(self._read_keys)
        base = GatewayConfig(current, self._recorded.proxy, self._recorded.vlans)
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
                await self._record(r.with_proxy(""))
                raise
        await self._record(r.with_proxy(controller))

    def rem_tcp_proxy(self) -> "Deferred[None]":
        """Stop the proxy."""
        return Deferred.fromCoroutine(self._rem_proxy())

    async def _rem_proxy(self) -> None:
        await self._stop_proxy()
        r = self._recorded
        await self._record(r.with_proxy(""))

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
            await self._record(r.with_vlans(applied))

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
        await self._record(r.with_vlans(vlan_map))

    async def _clear_after_failure(self) -> None:
        r = self._recorded
        try:
            await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        except GeniError:
            self.log.warn("could not clear the VLAN flows after a failed change")
        await self._record(r.with_vlans({}))

    def rem_ovs(self) -> "Deferred[None]":
        """Remove the agent's flows."""
        return Deferred.fromCoroutine(self._rem_vlans())

    async def _rem_vlans(self) -> None:
        await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        r = self._recorded
        await self._record(r.with_vlans({}))

    def reset(self) -> "Deferred[None]":
        """Stop the proxy, remove the agent's flows and empty the keys file, whatever is recorded."""
        return Deferred.fromCoroutine(self._reset())

    async def _reset(self) -> None:
        await self._stop_proxy()
        await self._run_all(self._settings.vlan_clear, self._settings.clear_values())
        await self._apply_users(())
        await self._record(GatewayConfig())

    def state(self) -> "Deferred[GatewayConfig]":
        """Fire with the keys in the keys file, the running proxy and the recorded VLAN map."""
        return Deferred.fromCoroutine(self._state())

    async def _state(self) -> GatewayConfig:
        users = await self._runner.run(self._read_keys)
        proxy = self._proxy_controller if self._proxy is not None else ""
        return GatewayConfig(users, proxy, dict(self._recorded.vlans))
