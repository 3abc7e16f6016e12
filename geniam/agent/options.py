# -*- test-case-name: tests.agent.test_options -*-
"""
The gateway agent's options: command-line flags and a TOML file.

The flags shared by every geniam daemon come from L{geniam.config.ServerOptions}
(C{--port}, C{--interface}, C{--data-dir}, C{--trust-roots},
C{--certificate}, C{--private-key}, C{--config}); the agent adds
C{--backend}, C{--allow} (repeatable, required unless the agent uses the
development trust domain), C{--controller-network} (repeatable) and
C{--secret-file}.

C{--config FILE} reads a TOML file: settings at top level or in an
C{[agent]} table (which wins), plus two tables, C{inventory} (C{switches},
C{links}) and C{command} (see L{geniam.agent.backends.command.CommandSettings}),
either at top level or inside C{[agent]}. Other roles' tables are ignored,
so one file may configure a whole federation. A flag given on the command
line overrides the file. A relative C{authorized-keys} path is relative to
the data directory.

Without C{--certificate} the agent uses the development trust domain in
C{<data-dir>/trust} (created on first start, with an identity named
C{agent}), like the other daemons; an AM sharing that data directory can
then log in.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from typing import Any

from twisted.python import usage

from geniam.gateway.inventory import DEFAULT_INVENTORY, Inventory
from geniam.agent.backends.commandsettings import CommandSettings
from geniam.config import ControllerNetworksOption, ServerOptions, port_number
from geniam.errors import GeniError
from geniam.gatewayconfig import ControllerPolicy
from geniam.urn import parse_urn
from geniam.web.status import STATUS_OPTIONS

DEFAULT_PORT = 8002
BACKENDS = ("simulated", "command")
_TABLES = ("inventory", "command")
_OTHER_ROLES = ("am", "sm")
NEEDS_ALLOW = (
    "the gateway agent needs --allow URN naming each aggregate manager it serves "
    "(only the development trust domain, without --certificate, allows its own 'am' by itself)"
)


@dataclass(frozen=True)
class AgentSettings:
    """
    The agent's configuration after merging flags, file and defaults.

    @ivar certificate: the agent's certificate, or None for the development trust domain.
    @ivar allow: URNs allowed to log in; empty only with the development
        trust domain, whose C{am} is then allowed.
    @ivar command: the command back end's settings, if configured.
    @ivar controller_policy: where users' controllers may be.
    @ivar status_port: the plain-HTTP status listener's port (C{/metrics},
        C{/healthz}), or None for none.
    """

    port: int
    interface: str
    data_dir: str
    trust_roots: str | None
    certificate: str | None
    private_key: str | None
    backend: str
    allow: tuple[str, ...]
    secret_file: str | None
    inventory: Inventory
    command: CommandSettings | None
    controller_policy: ControllerPolicy = ControllerPolicy()
    status_port: int | None = None
    status_interface: str = "127.0.0.1"


def _allow(value: object) -> str:
    try:
        return str(parse_urn(value))
    except GeniError as e:
        raise usage.UsageError(f"--allow: {e.output}") from None


class AgentOptions(ControllerNetworksOption, ServerOptions):
    """
    Options of C{twistd geniam-agent}; after parsing, L{settings} holds the result.
    """

    role = "agent"
    default_port = DEFAULT_PORT
    synopsis = "[options]"
    longdesc = (
        "Run the gateway agent: a Perspective Broker server over mutual TLS that applies "
        "users' SSH keys, the TCP proxy to their OpenFlow controller and the VLAN map on the island's "
        "gateway. Only the aggregate managers named with --allow may log in (required unless the "
        "development trust domain is used): their TLS client certificate must chain to the trust roots "
        "and name an allowed URN, and they must know the shared secret when --secret-file is given. "
        "Flags override --config."
    )

    optParameters = [
        ["backend", None, "simulated", "How configuration is applied: simulated or command."],
        ["secret-file", None, None, "File holding a secret the AM must also know (optional)."],
        *STATUS_OPTIONS,
    ]

    settings: AgentSettings

    def __init__(self) -> None:
        super().__init__()
        dict.__setitem__(self, "allow", [])
        self._tables: dict[str, Any] = {}

    def opt_allow(self, urn: str) -> None:
        """Allow this AM URN to log in (repeatable; required unless the development trust domain is used)."""
        self["allow"].append(_allow(urn))

    def _merge_file(self, path: str) -> None:
        try:
            with open(path, "rb") as handle:
                data = tomllib.load(handle)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise usage.UsageError(f"--config {path}: {e}") from None
        section = data.get(self.role, {})
        if not isinstance(section, dict):
            raise usage.UsageError(f"--config {path}: [{self.role}] must be a table")
        values: dict[str, Any] = {}
        for source in (data, section):
            for raw_key, value in source.items():
                key = raw_key.replace("_", "-")
                if key in _TABLES:
                    if not isinstance(value, dict):
                        raise usage.UsageError(f"--config {path}: {raw_key} must be a table")
                    self._tables[key] = value
                elif source is data and (key in _OTHER_ROLES or key == self.role):
                    continue
                elif isinstance(value, dict) or key not in self or key == "config":
                    raise usage.UsageError(f"--config {path}: unknown setting {raw_key!r}")
                else:
                    values[key] = value
        for key, value in values.items():
            if key in ("allow", "controller-network"):
                if not self[key]:
                    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                        raise usage.UsageError(f"--config {path}: {key} must be a list of strings")
                    for item in value:
                        getattr(self, "opt_" + key.replace("-", "_"))(item)
                continue
            if key in self._given:
                continue
            if key in ("port", "status-port"):
                try:
                    value = port_number(value)
                except (TypeError, ValueError):
                    raise usage.UsageError(f"--config {path}: {key} must be a number") from None
            elif not isinstance(value, str):
                raise usage.UsageError(f"--config {path}: {key} must be a string")
            dict.__setitem__(self, key, value)

    def check(self) -> None:
        """Check the agent's own options and build L{settings}."""
        if self["backend"] not in BACKENDS:
            raise usage.UsageError(f"--backend must be one of {', '.join(BACKENDS)}, not {self['backend']!r}")
        if not 0 <= int(self["port"]) <= 65535:
            raise usage.UsageError(f"--port {self['port']} is not a port number")
        if self["certificate"] and not self["allow"]:
            raise usage.UsageError(NEEDS_ALLOW)
        if self["secret-file"] and not os.path.isfile(self["secret-file"]):
            raise usage.UsageError(f"--secret-file: no such file {self['secret-file']}")
        inventory_table = self._tables.get("inventory")
        command_table = self._tables.get("command")
        if inventory_table and set(inventory_table) - {"switches", "links"}:
            raise usage.UsageError("the inventory table takes only switches and links")
        data_dir = str(self["data-dir"])
        try:
            inventory = DEFAULT_INVENTORY
            if inventory_table:
                inventory = Inventory.from_config(
                    inventory_table.get("switches", list(DEFAULT_INVENTORY.switches)),
                    inventory_table.get("links", []),
                )
            command = CommandSettings.from_config(command_table, data_dir, data_dir) if command_table is not None else None
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        self.settings = AgentSettings(
            port=int(self["port"]),
            interface=str(self["interface"]),
            data_dir=data_dir,
            trust_roots=self["trust-roots"],
            certificate=self["certificate"],
            private_key=self["private-key"],
            backend=self["backend"],
            allow=tuple(dict.fromkeys(self["allow"])),
            secret_file=self["secret-file"],
            inventory=inventory,
            command=command,
            controller_policy=self.controller_policy(),
            status_port=self["status-port"],
            status_interface=str(self["status-interface"]),
        )
