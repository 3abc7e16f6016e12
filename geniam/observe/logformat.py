# -*- test-case-name: tests.observe.test_logformat -*-
"""
C{--log-format json}: every log event as one JSON object on one line.

Each line holds C{time} (ISO 8601, UTC), C{level}, C{namespace},
C{message} (the event's text, as the text log shows it) and every named
field of the event (C{method}, C{caller_urn}, C{slice_urn},
C{sliver_urns}, C{geni_code}, C{duration}, ... for calls; see
L{geniam.observe.observation}); a logged failure adds C{failure}, its
traceback. Values that are not JSON are written as their text.

How a flag of a twistd plugin chooses the observer: twistd builds the
service (C{makeService}) I{before} it starts logging, and then uses the
application's C{ILogObserver} component if it has one (the way a C{.tac}
file sets it), unless C{--logger} names another. The top service of each
role (L{geniam.tap.failfast.StartupGuard}) sets that component when it is
added to the application, with an observer writing where twistd would
have written text: standard output with C{-n} (or C{--logfile -}), else
C{--logfile} (default C{twistd.log}). twistd's own C{--logger} still
wins; C{twist} has its own C{--log-format json}.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import FileLogObserver, ILogObserver, formatEvent
from twisted.python.components import Componentized
from twisted.python.logfile import LogFile

FORMATS = ("text", "json")


def log_format(value: str) -> str:
    """Coerce a C{--log-format} value."""
    if value not in FORMATS:
        raise ValueError(f"must be one of {', '.join(FORMATS)}, not {value!r}")
    return value


LOG_FORMAT_OPTION: list[Any] = [
    "log-format", None, "text", "How the log is written: text, or json (one JSON object per line).", log_format,
]
"""The C{--log-format} flag of every role."""

_SKIPPED = frozenset({"message", "format", "isError", "why", "time", "failure"})
"""Keys of legacy log events that the JSON line replaces by its own."""


def _jsonable(value: Any, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth < 4 and isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item, depth + 1) for item in value]
    if depth < 4 and isinstance(value, Mapping):
        return {str(key): _jsonable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def event_as_json(event: Mapping[str, Any]) -> str:
    """One log event as a JSON object (no newline)."""
    when = event.get("log_time")
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": datetime.fromtimestamp(when, timezone.utc).isoformat() if isinstance(when, (int, float)) else None,
        "level": getattr(level, "name", None) or ("error" if event.get("isError") else "info"),
        "namespace": event.get("log_namespace") or event.get("system") or "",
        "message": formatEvent(dict(event)),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _SKIPPED or key in record:
            continue
        record[key] = _jsonable(value)
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False, default=str)


def json_observer(out: IO[str]) -> ILogObserver:
    """An observer writing each event to C{out} as one JSON line."""
    return FileLogObserver(out, lambda event: event_as_json(event) + "\n")


def twistd_log_file(twistd_options: Mapping[str, Any]) -> IO[str]:
    """Where twistd would write its text log, given its own options."""
    name = twistd_options.get("logfile") or ""
    if name == "-" or (not name and twistd_options.get("nodaemon")):
        return sys.stdout
    return LogFile.fromFullPath(name or "twistd.log")  # type: ignore[return-value]


def choose_twistd_observer(options: Any, application: object) -> None:
    """
    With C{--log-format json} in C{options} (a role's parsed options,
    whose C{parent} is twistd's own), give the twistd C{application} a
    JSON observer as its C{ILogObserver} component (see the module
    docstring). Does nothing otherwise, or when C{application} is not
    twistd's (a test's service tree).
    """
    if not hasattr(options, "get") or options.get("log-format", "text") != "json":
        return
    if not isinstance(application, Componentized):
        return
    twistd_options = getattr(options, "parent", None) or {}
    if twistd_options.get("logger"):
        return
    application.setComponent(ILogObserver, json_observer(twistd_log_file(twistd_options)))
