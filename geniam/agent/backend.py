# -*- test-case-name: tests.agent.test_backend -*-
"""
What a gateway back end stands on: the state file that keeps the applied
configuration (a L{GatewayConfig}) across restarts, and the runner of its
small blocking file operations. The back end interface is
L{geniam.interfaces.IGatewayBackend}.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorFromThreads
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from geniam.errors import GeniError
from geniam.gateway.config import GatewayConfig

STATE_VERSION = 1

T = TypeVar("T")


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

    def load(self) -> GatewayConfig:
        """
        Read the state (blocking; call at start-up). A missing file is the default state.

        @raise StateFileError: if the file is unreadable or malformed.
        """
        try:
            with open(self.path, "rb") as handle:
                raw = handle.read(4 * 1024 * 1024)
        except FileNotFoundError:
            return GatewayConfig()
        except OSError as e:
            raise StateFileError(f"cannot read gateway state file {self.path}: {e.strerror}") from None
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
                raise StateFileError(f"gateway state file {self.path} has an unknown format version")
            return GatewayConfig.from_wire(data, extra=("version",))
        except (ValueError, GeniError) as e:
            raise StateFileError(f"gateway state file {self.path} is malformed: {e}") from None

    def _write(self, state: GatewayConfig) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)
        data = dict(state.to_wire(), version=STATE_VERSION)
        write_atomically(self.path, json.dumps(data, indent=1, sort_keys=True).encode("utf-8") + b"\n")

    def save(self, state: GatewayConfig) -> "Deferred[None]":
        """Persist C{state}; fire with None once it is on disk."""
        return self._runner.run(self._write, state)
