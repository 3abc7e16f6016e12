# -*- test-case-name: tests.managers.test_arguments -*-
"""
Command-line and file configuration shared by geniam's daemons.

Each role's C{Options} subclasses L{ServerOptions}. Values come from, in
order of precedence: the command line, the TOML file given with
C{--config}, the defaults. Parsed once; constructors get plain values.
"""

from __future__ import annotations

import os
import tomllib
from typing import Any, Callable

from twisted.python import usage

from geniam.protocols.httpchannel import DEFAULT_IDLE_TIMEOUT, DEFAULT_MIN_BODY_RATE, DEFAULT_REQUEST_TIMEOUT
from geniam.protocols.listener import DEFAULT_MAX_CONNECTIONS_PER_CLIENT
from geniam.observe.logformat import LOG_FORMAT_OPTION
from geniam.options import GeniamOptions


def positive_int(text: str) -> int:
    """Coerce a strictly positive integer."""
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text} is not a positive integer")
    return value


def non_negative_int(text: str) -> int:
    """Coerce an integer of 0 or more."""
    value = int(text)
    if value < 0:
        raise ValueError(f"{text} is a negative number")
    return value


def port_number(text: str) -> int:
    """Coerce a TCP port number (0 picks a free one)."""
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"{text} is not a port number")
    return value


def duration(text: str) -> float:
    """Coerce a duration: seconds, or a number with a unit s/m/h/d (C{48h})."""
    text = str(text).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    scale = units.get(text[-1:], None)
    number = float(text[:-1] if scale else text)
    if number <= 0:
        raise ValueError(f"{text} is not a positive duration")
    return number * (scale or 1)


def duration_or_off(text: str) -> float:
    """Coerce a duration that may be 0 (off)."""
    if str(text).strip() in ("0", "0s", "0.0"):
        return 0.0
    return duration(text)


LISTENER_PARAMETERS: list[list[Any]] = [
    [
        "request-timeout",
        None,
        DEFAULT_REQUEST_TIMEOUT,
        "How long a request's line and headers may take to arrive (then 408 and close).",
        duration,
    ],
    [
        "min-body-rate",
        None,
        DEFAULT_MIN_BODY_RATE,
        "Bytes per second a request body must average once --request-timeout has passed after its headers.",
        positive_int,
    ],
    ["idle-timeout", None, DEFAULT_IDLE_TIMEOUT, "How long a kept-alive connection may idle between requests.", duration],
    [
        "max-connections-per-client",
        None,
        DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        "Connections one client address may hold at once (0: no cap).",
        non_negative_int,
    ],
]
"""The options of a TLS XML-RPC listener, shared by the aggregate manager and the slice manager."""


class ServerOptions(GeniamOptions):
    """
    The flags every geniam daemon takes; subclasses add their own.

    A TOML file given with C{--config} may set any long option by name
    (dashes or underscores), at top level or in the role's table
    (C{[am]}, C{[sm]}, C{[agent]}); flags given on the command line win.
    """

    role = "server"
    default_port = 8001

    optParameters: list[list[Any]] = [
        ["config", "c", None, "TOML configuration file."],
        ["port", "p", None, "TCP port to listen on (TLS).", port_number],
        ["interface", "i", "127.0.0.1", "Address to listen on (0.0.0.0 for all IPv4)."],
        ["data-dir", "d", "geniam-data", "Folder for the database, state and a development trust domain."],
        ["trust-roots", None, None, "Trusted root certificates: a PEM file (one or several) or a folder of them."],
        ["certificate", None, None, "This server's certificate (PEM, chain allowed)."],
        ["private-key", None, None, "This server's private key (PEM)."],
        LOG_FORMAT_OPTION,
    ]

    def __init__(self) -> None:
        super().__init__()
        self._given: set[str] = set()

    def __setitem__(self, key: str, value: Any) -> None:
        # usage.Options stores parsed flags through item assignment after
        # defaults were set in __init__; remember which ones were given.
        if hasattr(self, "_given"):
            self._given.add(key)
        super().__setitem__(key, value)

    def postOptions(self) -> None:
        """Merge the configuration file under the flags, then validate."""
        if self["config"]:
            self._merge_file(self["config"])
        if self["port"] is None:
            self["port"] = self.default_port
        for pair in (("certificate", "private-key"),):
            if bool(self[pair[0]]) != bool(self[pair[1]]):
                raise usage.UsageError(f"--{pair[0]} and --{pair[1]} go together")
        for key in ("certificate", "private-key"):
            if self[key] and not os.path.isfile(self[key]):
                raise usage.UsageError(f"--{key}: no such file {self[key]}")
        if self["trust-roots"] and not os.path.exists(self["trust-roots"]):
            raise usage.UsageError(f"--trust-roots: no such file or folder {self['trust-roots']}")
        self.check()

    def check(self) -> None:
        """Role-specific cross-checks; raise L{usage.UsageError}."""

    def _merge_file(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise usage.UsageError(f"--config {path}: {e}") from None
        section = data.get(self.role, {})
        values = {k: v for k, v in data.items() if not isinstance(v, dict)}
        if isinstance(section, dict):
            values.update(section)
        coercers = {p[0]: (p[4] if len(p) > 4 else None) for p in self._all_parameters()}
        for raw_key, value in values.items():
            key = raw_key.replace("_", "-")
            if key not in self or key == "config":
                raise usage.UsageError(f"--config {path}: unknown setting {raw_key!r}")
            if key in self._given or (isinstance(self[key], list) and self[key]):
                continue
            coerce: Callable[[Any], Any] | None = coercers.get(key)
            if isinstance(self[key], list):
                self[key] = list(value) if isinstance(value, list) else [value]
            else:
                try:
                    self[key] = coerce(value) if coerce else value
                except (TypeError, ValueError) as e:
                    raise usage.UsageError(f"--config {path}: {raw_key}: {e}") from None

    def _all_parameters(self) -> list[list[Any]]:
        found: list[list[Any]] = []
        for klass in type(self).__mro__:
            found.extend(getattr(klass, "optParameters", []) if "optParameters" in vars(klass) else [])
        return found


class ControllerNetworksOption:
    """
    The repeatable C{--controller-network CIDR} flag of the AM and the agent
    (a mix-in for L{ServerOptions}): networks where users' controllers may
    be, besides public addresses. Parsed networks land in C{self["controller-network"]}.
    """

    def __init__(self) -> None:
        super().__init__()
        dict.__setitem__(self, "controller-network", [])  # type: ignore[arg-type,index]

    def opt_controller_network(self, value: str) -> None:
        """Also allow controllers in this network (repeatable; default: public IP addresses only)."""
        from geniam.gatewayconfig import parse_networks

        try:
            parse_networks([value])
        except ValueError as e:
            raise usage.UsageError(f"--controller-network: {e}") from None
        self["controller-network"].append(str(value))  # type: ignore[index]

    def controller_policy(self) -> Any:
        """The L{geniam.gatewayconfig.ControllerPolicy} these options describe."""
        from geniam.gatewayconfig import ControllerPolicy

        try:
            return ControllerPolicy.allowing(self["controller-network"])  # type: ignore[index]
        except ValueError as e:
            raise usage.UsageError(f"controller-network: {e}") from None

