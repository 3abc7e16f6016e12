# -*- test-case-name: tests.tap.test_failfast -*-
"""
Fail fast: a daemon that cannot start says why in one line and exits with
a non-zero status, instead of running on while serving nothing.

Two moments can fail. Building the service (L{make_or_exit}, inside
C{makeService}: unreadable certificates, keys, trust roots or secret
files, contradictory settings) prints C{<program>: cannot start: <why>} on
standard error and exits at once. Starting it (L{StartupGuard}: the port is
taken, the database is unreachable or of a newer schema) logs
C{<program> could not start: <why>} at critical level, stops the reactor
and sets the process's exit status.

twistd has no way to set the status of a process whose reactor stopped
normally, so the status is set when the process ends: an C{atexit} handler,
registered when the start failed, flushes the standard streams and leaves
with C{os._exit(status)} after twistd has removed its PID file and stopped
its logging.

The statuses follow BSD C{sysexits}: L{EXIT_CONFIG} for what only a
change of configuration fixes, L{EXIT_UNAVAILABLE} for what may fix itself
(a supervisor may restart), L{EXIT_SOFTWARE} for anything unexpected
(logged with its traceback). twistd's own refusal of unknown flags exits 1.
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.application.service import IService, MultiService
from twisted.internet.error import CannotListenError, ReactorNotRunning
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure

from geniam.errors import GeniError
from geniam.observe.logformat import choose_twistd_observer
from geniam.tap.heap import settle_heap
from geniam.store.errors import SchemaTooNew, StoreError

T = TypeVar("T")

EXIT_CONFIG = 78
"""The configuration is wrong or names files that cannot be used (C{EX_CONFIG})."""

EXIT_UNAVAILABLE = 69
"""Something the daemon needs is not available now: its port, its database (C{EX_UNAVAILABLE})."""

EXIT_SOFTWARE = 70
"""An unexpected error (C{EX_SOFTWARE})."""


def explain(error: BaseException) -> tuple[int, str] | None:
    """
    The exit status and the one-line reason for a start-up failure, or
    None for an unexpected error (a bug, worth its traceback).
    """
    if isinstance(error, CannotListenError):
        where = f"{error.interface or '*'}:{error.port}"
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        return EXIT_UNAVAILABLE, f"cannot listen on {where}: {reason}"
    if isinstance(error, SchemaTooNew):
        return EXIT_CONFIG, error.message
    if isinstance(error, StoreError):
        return EXIT_UNAVAILABLE, error.message
    if isinstance(error, GeniError):
        return EXIT_CONFIG, error.output
    if isinstance(error, usage.UsageError):
        return EXIT_CONFIG, str(error)
    if isinstance(error, OSError):
        name = f"{error.filename}: " if error.filename else ""
        return EXIT_CONFIG, f"{name}{error.strerror or error}"
    return None


def make_or_exit(program: str, make: Callable[..., T], *args: Any) -> T:
    """
    Build a daemon's service with C{make(*args)}; if that fails for a
    reason L{explain} knows, print C{<program>: cannot start: <why>} on
    standard error and exit with its status.
    """
    try:
        return make(*args)
    except Exception as e:
        known = explain(e)
        if known is None:
            raise
        status, reason = known
        print(f"{program}: cannot start: {reason}", file=sys.stderr)
        raise SystemExit(status) from None


def exit_at_process_end(status: int) -> None:
    """Make the process exit with C{status} once it ends (after twistd has cleaned up)."""

    def leave() -> None:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                if stream is not None:
                    stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)

    atexit.register(leave)


class StartupGuard(MultiService):
    """
    The top of a daemon's service tree: it starts the role's service and,
    if that fails (at once, or later through its C{when_started()}
    Deferred, if it has one), logs one line, stops the reactor and makes
    the process exit with a non-zero status.

    Added to twistd's application, it sets the log observer
    C{--log-format} asks for (L{geniam.observe.logformat.choose_twistd_observer}).
    Once the role's service has started, C{settle} runs
    (L{geniam.tap.heap.settle_heap}).

    @ivar service: the role's service.
    @ivar exit_status: the status set after a failed start, else None.
    """

    log = Logger()

    def __init__(
        self,
        service: IService,
        program: str,
        reactor: Any,
        set_exit_status: Callable[[int], None] = exit_at_process_end,
        options: Any = None,
        settle: Callable[[], object] = settle_heap,
    ) -> None:
        """
        @param options: the role's parsed options (for C{--log-format}).
        @param settle: what to do once the role's service has started.
        """
        super().__init__()
        self._options = options
        self.service = service
        self.program = program
        self._reactor = reactor
        self._set_exit_status = set_exit_status
        self._settle = settle
        self.exit_status: int | None = None
        service.setServiceParent(self)

    def setServiceParent(self, parent: Any) -> None:
        """Join C{parent}; if it is twistd's application, choose its log observer."""
        choose_twistd_observer(self._options, parent)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        """Let the role's service take privileged resources (twistd listens here); a failure ends the process."""
        try:
            super().privilegedStartService()
        except Exception:
            self.failed(Failure())

    def startService(self) -> None:
        """Start the role's service; a failure, now or later, ends the process."""
        if self.exit_status is not None:
            self.running = 1
            return
        when_started = getattr(self.service, "when_started", None)
        if when_started is not None:
            when_started().addCallbacks(lambda _: self._settle(), self.failed)
        try:
            super().startService()
        except Exception:
            self.failed(Failure())

    def failed(self, failure: Failure) -> None:
        """Log why the start failed, stop the reactor and set the exit status (once)."""
        if self.exit_status is not None:
            return
        known = explain(failure.value)
        if known is None:
            status = EXIT_SOFTWARE
            self.log.failure("{program} could not start", failure, program=self.program)
        else:
            status, reason = known
            self.log.critical("{program} could not start: {reason}", program=self.program, reason=reason)
        self.exit_status = status
        self._set_exit_status(status)
        self._reactor.callWhenRunning(self._stop_reactor)

    def _stop_reactor(self) -> None:
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass
