# -*- test-case-name: tests.agent.backends.test_command,tests.agent.test_options -*-
"""
The command back end's settings: the table of argv templates it runs, and
how a template becomes an argument list.

An element of a template is either literal text or exactly one
placeholder such as C{{bridge}}, replaced by one whole value, so no value
is ever spliced into a command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import UNTAGGED, format_controller, parse_controller

_PLACEHOLDER = re.compile(r"^\{([a-z_]+)\}$")
_BRIDGE = re.compile(r"^[A-Za-z0-9_.\-]{1,15}$")

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
