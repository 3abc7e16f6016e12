# -*- test-case-name: tests.cli.test_rspec -*-
"""
C{geniam rspec}: write RSpecs from the command line.

C{geniam rspec request} prints a request RSpec booking an island::

  geniam rspec request --start 2026-05-01T10:00:00Z --end 2026-05-01T12:00:00Z \\
      --controller 192.0.2.10:6633 --vlan 10=0xffff --vlan 30=20 \\
      --aggregate urn:publicid:IDN+island.example+authority+am

C{--aggregate} may be repeated to book several islands behind a slice
manager in one request: each island gets its own node and its own slot,
controller and VLAN elements naming it, all with the same slot,
controller and VLANs.

A TIME is an RFC 3339 date-time (a missing zone means UTC), C{now}, or
C{now} plus or minus an offset made of numbers with the units C{s}, C{m},
C{h} and C{d}: C{now+10m}, C{now+1h30m}, C{now-30s}. Times are written in
whole seconds.

C{--advertisement FILE_OR_URL} writes a bound request instead: one node per
advertised switch (with its interfaces) and one link per advertised link,
for every island of the advertisement (or those C{--aggregate} names). An
C{https://} URL is asked for its advertisement with ListResources, with
C{--certificate}, C{--private-key}, C{--trust-roots} and C{--credential}
as C{geniam call} takes them. The slot is checked against the
advertisement's schedule first: a slot already taken prints the taken
window and exits with status 1, and nothing is written.

Bad options print an error and exit with status 2.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence

from twisted.python import usage

from geniam.errors import GeniCode, GeniError
from geniam.gatewayconfig import parse_controller, validate_vlan_map
from geniam.rspec.bound import build_bound_request, check_slot, read_advertisement
from geniam.options import GeniamOptions
from geniam.rspec.request import build_request
from geniam.timeutil import parse_time
from geniam.urn import parse_urn

PROGRAM = "geniam rspec"
_RELATIVE = re.compile(r"^now(?:([+-])((?:\d{1,9}[smhd])+))?$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: float) -> float:
    """
    Parse a command-line TIME: RFC 3339, C{now}, or C{now+1h30m}-style offsets.

    @param now: the current time, POSIX seconds.
    @return: POSIX seconds.
    @raise usage.UsageError: for anything else.
    """
    value = text.strip()
    match = _RELATIVE.match(value.lower())
    if match:
        sign, offsets = match.groups()
        seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"(\d+)([smhd])", offsets or ""))
        return now - seconds if sign == "-" else now + seconds
    try:
        return parse_time(value)
    except GeniError:
        raise usage.UsageError(
            f"bad time {text!r}: use RFC 3339 (2026-05-01T10:00:00Z), 'now' or 'now+1h30m'"
        ) from None


class _Options(GeniamOptions):
    """Options that report geniam's version rather than Twisted's."""

    def opt_version(self) -> None:
        """Display geniam's version and exit."""
        from geniam import __version__

        print(f"geniam {__version__}")
        sys.exit(0)


class RequestOptions(_Options):
    """Options of C{geniam rspec request}."""

    synopsis = "--start TIME --end TIME [options]"
    longdesc = (
        "Print a GENI v3 request RSpec that books a whole island for a time slot. "
        "TIME is RFC 3339 (2026-05-01T10:00:00Z), 'now', or 'now' with an offset "
        "such as now+10m, now+1h30m or now-30s (units s, m, h, d). "
        "Repeat --aggregate to book the same slot on several islands through a slice manager."
    )
    optParameters = [
        ["start", None, None, "start of the slot (TIME)"],
        ["end", None, None, "end of the slot (TIME)"],
        ["controller", None, None, "your OpenFlow controller, HOST:PORT ([IPv6]:PORT)"],
        ["advertisement", None, None, "write a request bound to the components of this advertisement (FILE or https:// URL)"],
        ["certificate", None, None, "your certificate, to fetch an advertisement URL"],
        ["private-key", None, None, "your private key, to fetch an advertisement URL"],
        ["trust-roots", None, None, "root certificates the server must chain to (PEM file or folder), to fetch a URL"],
    ]

    def __init__(self, now: float) -> None:
        super().__init__()
        self._now = now
        self["vlan"] = []
        self["aggregate"] = []
        self["credential"] = []

    def opt_credential(self, value: str) -> None:
        """Your user credential file, sent to fetch an advertisement URL; repeatable."""
        self["credential"].append(value)

    def opt_vlan(self, value: str) -> None:
        """Map a testbed VLAN to an island VLAN, OFELIA=ISLAND (ISLAND may be 0xffff for untagged); repeatable."""
        testbed, sep, island = value.partition("=")
        if not sep or not testbed.strip() or not island.strip():
            raise usage.UsageError(f"--vlan wants TESTBED=ISLAND, e.g. 10=0xffff, got {value!r}")
        self["vlan"].append((testbed.strip(), island.strip()))

    def opt_aggregate(self, value: str) -> None:
        """An island aggregate's URN (component_manager_id); repeat to book several islands."""
        self["aggregate"].append(value.strip())

    def postOptions(self) -> None:
        """Check and convert every option; raise L{usage.UsageError} on the first bad one."""
        for name in ("start", "end"):
            if self[name] is None:
                raise usage.UsageError(f"--{name} is required")
        self["start"] = parse_when(self["start"], self._now)
        self["end"] = parse_when(self["end"], self._now)
        if int(self["start"]) >= int(self["end"]):
            raise usage.UsageError("--start must be at least one second before --end")
        if (self["advertisement"] or "").startswith("https://"):
            missing = [f"--{k}" for k in ("certificate", "private-key", "trust-roots") if not self[k]]
            if missing:
                raise usage.UsageError(f"an advertisement URL needs {', '.join(missing)}")
        vlans: dict[str, str] = {}
        for testbed, island in self["vlan"]:
            if testbed in vlans:
                raise usage.UsageError(f"testbed VLAN {testbed} is given twice")
            vlans[testbed] = island
        try:
            if self["controller"] is not None:
                parse_controller(self["controller"])
            self["vlan_map"] = validate_vlan_map(vlans)
            if len(self["vlan_map"]) != len(vlans):
                raise usage.UsageError("a testbed VLAN is given twice")
            seen: set[str] = set()
            for aggregate in self["aggregate"]:
                key = parse_urn(aggregate).key
                if key in seen:
                    raise usage.UsageError(f"aggregate {aggregate} is given twice")
                seen.add(key)
        except GeniError as e:
            raise usage.UsageError(e.output) from None


class RspecOptions(_Options):
    """Options of C{geniam rspec}."""

    synopsis = "Usage: geniam rspec"

    def __init__(self, now: float) -> None:
        super().__init__()
        self._now = now

    @property
    def subCommands(self) -> list[tuple[str, None, object, str]]:  # type: ignore[override]
        """The subcommands, built with the current time for relative TIMEs."""
        return [("request", None, lambda: RequestOptions(self._now), "print a request RSpec for a time slot")]

    def postOptions(self) -> None:
        """Insist on a subcommand."""
        if self.subCommand is None:
            raise usage.UsageError("missing command (try: geniam rspec request --help)")


def main(argv: Sequence[str], now: float | None = None) -> int:
    """
    Run C{geniam rspec}.

    @param argv: the arguments after C{rspec}.
    @param now: the current time for relative TIMEs; the system clock by default.
    @return: 0 on success, 2 for bad options.
    """
    options = RspecOptions(time.time() if now is None else now)
    try:
        options.parseOptions(list(argv))
    except usage.UsageError as e:
        command = options.subOptions if options.subCommand else options
        print(f"{PROGRAM}: error: {e}", file=sys.stderr)
        print(command.getSynopsis() + (" COMMAND [options]" if command is options else ""), file=sys.stderr)
        return 2
    except SystemExit as e:
        return int(e.code or 0)
    request = options.subOptions
    try:
        if request["advertisement"]:
            text = bound_request(request)
        else:
            text = build_request(
                request["start"],
                request["end"],
                controller=request["controller"],
                vlan_map=request["vlan_map"],
                am_urns=request["aggregate"],
            )
    except GeniError as e:
        print(f"{PROGRAM}: error: {e.output}", file=sys.stderr)
        return 1 if e.code == GeniCode.UNAVAILABLE else 2
    sys.stdout.write(text)
    return 0


def bound_request(request: RequestOptions) -> str:
    """
    The bound request C{--advertisement} asks for, its slot checked
    against the advertised schedule.

    @raise GeniError: UNAVAILABLE for a taken slot; BADARGS or ERROR when
        the advertisement cannot be read or names none of the aggregates.
    """
    source = request["advertisement"]
    islands = read_advertisement(fetch_advertisement(request) if source.startswith("https://") else _read_file(source))
    if request["aggregate"]:
        wanted = [parse_urn(a).key for a in request["aggregate"]]
        by_key = {parse_urn(i.am_urn).key: i for i in islands}
        missing = [a for a, key in zip(request["aggregate"], wanted) if key not in by_key]
        if missing:
            raise GeniError(GeniCode.BADARGS, f"the advertisement lists no island {', '.join(missing)}")
        islands = [by_key[key] for key in wanted]
    check_slot(islands, request["start"], request["end"])
    return build_bound_request(
        request["start"], request["end"], islands, controller=request["controller"], vlan_map=request["vlan_map"]
    )


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise GeniError(GeniCode.BADARGS, f"cannot read the advertisement {path}: {e.strerror}") from None


def fetch_advertisement(request: RequestOptions) -> str:
    """Ask the aggregate or slice manager at the URL for its advertisement (ListResources), as C{geniam call} does."""
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    from geniam.client import AMClient, value_of
    from geniam.trust.gid import TrustRoots
    from geniam.trust.identity import Identity

    outcome: list[str | GeniError] = []

    async def fetch(reactor: object) -> None:
        try:
            identity = Identity.from_files(request["certificate"], request["private-key"])
            roots = TrustRoots.from_path(request["trust-roots"])
            credentials = [_read_file(path).decode("utf-8", "replace") for path in request["credential"]]
            client = AMClient(reactor, request["advertisement"], identity, roots, credentials)
            try:
                outcome.append(value_of(await client.list_resources()))
            finally:
                await client.close()
        except GeniError as e:
            outcome.append(e)
        except OSError as e:
            outcome.append(GeniError(GeniCode.ERROR, f"cannot read {e.filename}: {e.strerror}"))

    try:
        react(lambda reactor: Deferred.fromCoroutine(fetch(reactor)))
    except SystemExit:
        pass
    if not outcome:
        raise GeniError(GeniCode.ERROR, f"no advertisement from {request['advertisement']}")
    result = outcome[0]
    if isinstance(result, GeniError):
        # Not UNAVAILABLE: that exit status means the slot is taken.
        raise GeniError(GeniCode.ERROR, f"{request['advertisement']}: {result.output}")
    return result
