# -*- test-case-name: tests.test_agent_backend -*-
"""
What a gateway back end is: the interface, the applied state, the island
inventory and the state file that keeps the applied state across restarts.

A back end applies one configuration at a time: the SSH keys of the users
allowed on the gateway, the TCP proxy to the user's OpenFlow controller and
the VLAN map between the testbed and the island. Arguments reaching a back
end are already validated and normalised by L{geniam.gatewayconfig}; the
back end enforces the gateway-wide limits (L{MAX_USERS}, L{MAX_USER_BYTES}).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool
from zope.interface import Interface

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_ssh_key, validate_vlan_map

MAX_USERS = 256
"""At most this many SSH keys are authorised on a gateway at once."""

MAX_USER_BYTES = 256 * 1024
"""At most this many characters of SSH keys in total (keeps PB messages far below Banana's 640 KiB)."""

STATE_VERSION = 1

_DPID = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){7}$")
_MAX_PORT = 0xFFFFFF00

T = TypeVar("T")


class IGatewayBackend(Interface):
    """
    The device side of a gateway agent: applies and reports one configuration.

    Every mutator is idempotent and fires with C{None}; arguments are already
    validated and normalised. Failures are L{GeniError}s (REFUSED when the
    gateway declines, e.g. a tool failed or a limit was hit). Callers
    serialise calls: a back end never sees two calls at once.
    """

    def start():  # type: ignore[misc]
        """Load the persisted state and re-apply what must run; fire with None when ready."""

    def stop():  # type: ignore[misc]
        """Release processes the back end runs; fire with None when done."""

    def switches():  # type: ignore[misc]
        """Fire with the island's switch DPIDs (a list of strings)."""

    def links():  # type: ignore[misc]
        """Fire with the island's links as C{DPID:port-DPID:port} strings."""

    def set_user_auth(keys):  # type: ignore[misc]
        """Add these SSH public keys (a tuple of validated key lines) to the authorised users."""

    def rem_user_auth(keys):  # type: ignore[misc]
        """Remove these SSH public keys from the authorised users."""

    def set_tcp_proxy(controller):  # type: ignore[misc]
        """Forward the gateway's controller port to C{controller} (a validated C{host:port})."""

    def rem_tcp_proxy():  # type: ignore[misc]
        """Stop forwarding the controller port."""

    def set_ovs(vlan_map):  # type: ignore[misc]
        """Replace the VLAN map with C{vlan_map} (validated C{{testbed: island}})."""

    def rem_ovs():  # type: ignore[misc]
        """Remove the VLAN map."""

    def reset():  # type: ignore[misc]
        """Restore the default configuration: no users, no proxy, no VLAN map."""

    def state():  # type: ignore[misc]
        """Fire with the L{GatewayState} applied now."""


@dataclass(frozen=True)
class GatewayState:
    """
    The configuration applied on a gateway.

    @ivar users: the authorised SSH public keys, in the order they were added.
    @ivar proxy: the controller C{host:port} the proxy forwards to, or C{""}.
    @ivar vlans: the VLAN map C{{testbed VLAN: island VLAN}} (decimal strings, or C{0xffff}).
    """

    users: tuple[str, ...] = ()
    proxy: str = ""
    vlans: Mapping[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        """Return the plain-data form sent over PB: C{{"users": [...], "proxy": str, "vlans": {...}}}."""
        return {"users": list(self.users), "proxy": self.proxy, "vlans": dict(self.vlans)}

    @classmethod
    def from_wire(cls, data: object) -> "GatewayState":
        """
        Validate and normalise the plain-data form (from PB or the state file).

        @raise GeniError: BADARGS if any part is malformed.
        """
        if not isinstance(data, dict) or set(data) - {"users", "proxy", "vlans", "version"}:
            raise GeniError(GeniCode.BADARGS, "gateway state must be a struct with users, proxy and vlans")
        raw_users = data.get("users", [])
        if not isinstance(raw_users, list) or len(raw_users) > MAX_USERS:
            raise GeniError(GeniCode.BADARGS, f"gateway state: users must be a list of at most {MAX_USERS} SSH keys")
        users = tuple(dict.fromkeys(validate_ssh_key(k) for k in raw_users))
        proxy = data.get("proxy", "")
        if proxy:
            parse_controller(proxy)
        elif proxy != "":
            raise GeniError(GeniCode.BADARGS, "gateway state: proxy must be 'host:port' or ''")
        vlans = validate_vlan_map(data.get("vlans", {}))
        state = cls(users, proxy, vlans)
        check_user_limits(state.users)
        return state


def check_user_limits(users: tuple[str, ...]) -> None:
    """
    Refuse a set of authorised keys larger than the gateway accepts.

    @raise GeniError: REFUSED if there are more than L{MAX_USERS} keys or
        more than L{MAX_USER_BYTES} characters of keys.
    """
    if len(users) > MAX_USERS:
        raise GeniError(GeniCode.REFUSED, f"the gateway authorises at most {MAX_USERS} SSH keys")
    if sum(len(k) for k in users) > MAX_USER_BYTES:
        raise GeniError(GeniCode.REFUSED, f"the gateway's SSH keys may total at most {MAX_USER_BYTES} characters")


def add_users(state: GatewayState, keys: Iterable[str]) -> GatewayState:
    """Return C{state} with C{keys} added (order kept, duplicates dropped), within the limits."""
    users = tuple(dict.fromkeys([*state.users, *keys]))
    check_user_limits(users)
    return GatewayState(users, state.proxy, state.vlans)


def remove_users(state: GatewayState, keys: Iterable[str]) -> GatewayState:
    """Return C{state} without C{keys}."""
    gone = set(keys)
    return GatewayState(tuple(k for k in state.users if k not in gone), state.proxy, state.vlans)


def normalise_dpid(text: object) -> str:
    """
    Normalise a datapath id to eight lower-case hex pairs joined by colons.

    Accepts C{00:00:..:01}, or 16 hex digits with an optional C{0x} prefix.

    @raise ValueError: if C{text} is not a datapath id.
    """
    if not isinstance(text, str):
        raise ValueError(f"datapath id must be a string, not {type(text).__name__}")
    value = text.strip().strip('"').lower()
    if value.startswith("0x"):
        value = value[2:]
    if re.fullmatch(r"[0-9a-f]{16}", value):
        value = ":".join(value[i:i + 2] for i in range(0, 16, 2))
    if not _DPID.match(value):
        raise ValueError(f"not a datapath id: {text[:40]!r}")
    return value


def _endpoint(text: str) -> tuple[str, int]:
    dpid, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= _MAX_PORT:
        raise ValueError(f"link end {text[:60]!r} is not 'DPID:port'")
    return normalise_dpid(dpid), int(port)


def normalise_link(text: object) -> str:
    """
    Normalise a link C{DPID:port-DPID:port}.

    @raise ValueError: if C{text} is not a link.
    """
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"link {str(text)[:80]!r} is not 'DPID:port-DPID:port'")
    ends = [_endpoint(part.strip()) for part in text.split("-")]
    return "-".join(f"{dpid}:{port}" for dpid, port in ends)


@dataclass(frozen=True)
class Inventory:
    """The island's switches and links, as L{IGatewayBackend.switches}/C{links} report them."""

    switches: tuple[str, ...]
    links: tuple[str, ...]

    @classmethod
    def from_config(cls, switches: object, links: object) -> "Inventory":
        """
        Build an inventory from configuration lists, normalising every entry.

        @raise ValueError: for anything that is not a datapath id or link, or
            a link whose ends are not among the switches.
        """
        if not isinstance(switches, list) or not isinstance(links, list):
            raise ValueError("inventory switches and links must be lists of strings")
        dpids = tuple(dict.fromkeys(normalise_dpid(s) for s in switches))
        normal = tuple(dict.fromkeys(normalise_link(link) for link in links))
        known = set(dpids)
        for link in normal:
            for end in link.split("-"):
                if end.rpartition(":")[0] not in known:
                    raise ValueError(f"link {link} names a switch that is not in the inventory")
        return cls(dpids, normal)


DEFAULT_INVENTORY = Inventory(
    switches=(
        "00:00:00:00:00:00:00:01",
        "00:00:00:00:00:00:00:02",
        "00:00:00:00:00:00:00:03",
        "00:00:00:00:00:00:00:04",
    ),
    links=(
        "00:00:00:00:00:00:00:01:1-00:00:00:00:00:00:00:02:1",
        "00:00:00:00:00:00:00:02:2-00:00:00:00:00:00:00:03:1",
        "00:00:00:00:00:00:00:03:2-00:00:00:00:00:00:00:04:1",
        "00:00:00:00:00:00:00:04:2-00:00:00:00:00:00:00:01:2",
        "00:00:00:00:00:00:00:01:3-00:00:00:00:00:00:00:03:3",
    ),
)
"""Four switches in a ring plus one diagonal link, used when the configuration names no inventory."""


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace the file at C{path} with C{data} so that readers see the old or
    the new content, never a mix: write a temporary file beside it, flush it
    to disk, then rename it over C{path}.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class BlockingRunner:
    """
    Runs small blocking file operations: in a bounded thread pool when one is
    given, else inline (tests, or a process with nothing else to do).
    """

    def __init__(self, pool: ThreadPool | None = None, reactor: IReactorFromThreads | None = None) -> None:
        """
        @param pool: the thread pool to use, started and stopped by its owner.
        @param reactor: the reactor results are delivered to; required with C{pool}.
        """
        if pool is not None and reactor is None:
            raise ValueError("a thread pool needs the reactor to deliver results")
        self._pool = pool
        self._reactor = reactor

    def run(self, function: Callable[..., T], *args: Any) -> "Deferred[T]":
        """Run C{function(*args)} and fire with its result."""
        if self._pool is None or self._reactor is None:
            return maybeDeferred(function, *args)
        return deferToThreadPool(self._reactor, self._pool, function, *args)


class StateFileError(Exception):
    """The state file exists but cannot be read as a gateway state."""


class StateFile:
    """
    A gateway state persisted as JSON, replaced atomically on every change.
    """

    def __init__(self, path: str, runner: BlockingRunner | None = None) -> None:
        """
        @param path: the JSON file; its directory is created on first save.
        @param runner: where the blocking writes run.
        """
        self.path = path
        self._runner = runner or BlockingRunner()

    def load(self) -> GatewayState:
        """
        Read the state (blocking; call at start-up). A missing file is the default state.

        @raise StateFileError: if the file is unreadable or malformed.
        """
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(4 * 1024 * 1024)
        except FileNotFoundError:
            return GatewayState()
        except OSError as e:
            raise StateFileError(f"cannot read gateway state file {self.path}: {e.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise StateFileError(f"gateway state file {self.path} has an unknown format version")
            return GatewayState.from_wire(data)
        except (ValueError, GeniError) as e:
            raise StateFileError(f"gateway state file {self.path} is malformed: {e}") from None

    def _write(self, state: GatewayState) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        data = dict(state.to_wire(), version=STATE_VERSION)
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n")

    def save(self, state: GatewayState) -> "Deferred[None]":
        """Persist C{state}; fire with None once it is on disk."""
        return self._runner.run(self._write, state)
