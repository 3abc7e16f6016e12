# -*- test-case-name: tests.test_demo -*-
"""
The experiment C{geniam demo} runs: what a user does with islands, step
by step, each step checked and recorded for readable tables.

The experiment calls one AM API v3 endpoint: an aggregate directly, or a
slice manager in front of several aggregates. Through a slice manager the
request names every island (L{federated_request}), each step's answer
carries per-aggregate statistics (L{AggregateStatistics}), and a step
behaves only if every aggregate took part in it.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

from geniam.client import AMClient, value_of
from geniam.errors import GeniCode, GeniError
from geniam.managers.rollup import STATISTICS_FIELD
from geniam.rspec.merge import read_statistics
from geniam.rspec.request import build_request
from geniam.timeutil import format_time
from geniam.urn import parse_urn

DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVuaWFtLWRlbW8ta2V5LW5vdC1mb3ItdXNlLWFueXdoZXJl demo@geniam"
CONTROLLER = "127.0.0.1:6633"
VLAN_MAP = {"10": "0xffff"}


@dataclass(frozen=True)
class AggregateStatistics:
    """
    What a slice manager reported about one aggregate for one call.

    @ivar name: the aggregate's URN (or URL when its URN is unknown).
    @ivar elapsed: seconds the aggregate took.
    @ivar status: C{success}, C{error} or C{timeout}.
    @ivar code: the GENI code of a failure, if any.
    @ivar reason: why it failed, if it did.
    """

    name: str
    elapsed: float
    status: str
    code: int | None = None
    reason: str | None = None

    @property
    def code_name(self) -> str:
        """The GENI code's name (C{SEARCHFAILED}), or the number if unknown, or C{""}."""
        if self.code is None:
            return ""
        try:
            return GeniCode(self.code).name
        except ValueError:
            return str(self.code)


@dataclass
class Step:
    """
    One checked step of the experiment.

    @ivar statistics: what the slice manager reported per aggregate for
        the step's (last) call; empty for direct calls and GetVersion.
    """

    name: str
    ok: bool
    detail: str
    millis: float
    statistics: list[AggregateStatistics] = field(default_factory=list)


class StepFailed(Exception):
    """A step did not behave as it should."""


async def all_behaved(steps: Callable[[], Awaitable[None]]) -> bool:
    """Take C{steps} (which raise L{StepFailed} at the first step that fails); True if all behaved."""
    try:
        await steps()
    except StepFailed:
        return False
    return True


def short_name(urn: str) -> str:
    """
    A short label for an aggregate or sliver URN: the last part of its
    authority (C{am1} for C{urn:publicid:IDN+geniam:demo:am1+authority+am});
    anything else unchanged.
    """
    try:
        authority = parse_urn(urn).authority
    except GeniError:
        return urn
    return authority.rsplit(":", 1)[-1] or authority


def federated_request(
    start: float,
    end: float,
    aggregate_urns: Sequence[str],
    controller: str | None = None,
    vlan_map: dict[str, str] | None = None,
) -> str:
    """
    One request RSpec booking the same slot on every island named: each
    island's node and extension elements carry its C{component_manager_id},
    so a slice manager sends each aggregate only its part (see
    L{build_request}).

    @param aggregate_urns: the island aggregates' URNs, at least one.
    @raise GeniError: BADARGS as L{build_request} raises it, or for no aggregate.
    """
    if not aggregate_urns:
        raise GeniError(GeniCode.BADARGS, "a federated request names at least one aggregate")
    return build_request(start, end, controller, vlan_map, am_urns=aggregate_urns)


def _number(value: Any, kind: Callable[[Any], Any]) -> Any:
    try:
        return kind(value)
    except (TypeError, ValueError):
        return None


def statistics_of(struct: Any) -> list[AggregateStatistics]:
    """
    The per-aggregate statistics of a slice manager's answer: its
    C{geniam_statistics} member, or else the C{<statistics>} element of
    the RSpec it returned (ListResources). Empty for anything else.
    """
    entries: list[dict[str, Any]] = []
    if isinstance(struct, dict) and isinstance(struct.get(STATISTICS_FIELD), dict):
        entries = [e for e in struct[STATISTICS_FIELD].get("aggregates", []) if isinstance(e, dict)]
    elif isinstance(struct, dict) and isinstance(struct.get("value"), str) and "statistics" in struct["value"]:
        try:
            entries = list(read_statistics(struct["value"]))
        except GeniError:
            entries = []
    return [
        AggregateStatistics(
            str(e.get("name", "?")),
            _number(e.get("elapsed"), float) or 0.0,
            str(e.get("status", "?")),
            _number(e.get("code"), int),
            str(e["exception"]) if e.get("exception") else None,
        )
        for e in entries
    ]


@dataclass
class Experiment:
    """
    Runs the lifecycle of one booking against an AM API v3 endpoint.

    @ivar client: calls the aggregate (or slice manager) as the user.
    @ivar slice_urn: the user's slice.
    @ivar user_urn: the user's URN (for C{geni_users}).
    @ivar now: the current time (the clock the servers use).
    @ivar wait: waits that many seconds of that clock.
    @ivar gateway_view: reports what the gateways have applied (for the
        table), at once or through an awaitable (asking the agents), if known.
    @ivar lead: how far ahead the slot starts; C{length}: how long it lasts.
    @ivar aggregate_urns: with a slice manager, the aggregates to book
        (every one must take part in each forwarded call); empty when
        calling one aggregate directly.
    """

    client: AMClient
    slice_urn: str
    user_urn: str
    now: Callable[[], float]
    wait: Callable[[float], Awaitable[None]]
    gateway_view: Callable[[], str | Awaitable[str]] | None = None
    lead: float = 5.0
    length: float = 10.0
    renew_by: float = 4.0
    steps: list[Step] = field(default_factory=list)
    on_step: Callable[[Step], None] | None = None
    aggregate_urns: tuple[str, ...] = ()
    _statistics: list[AggregateStatistics] = field(default_factory=list, init=False, repr=False)

    @property
    def federated(self) -> bool:
        """Whether the experiment runs through a slice manager."""
        return bool(self.aggregate_urns)

    async def _step(self, name: str, work: Callable[[], Awaitable[str]], forwarded: bool = True) -> None:
        started = time.perf_counter()
        self._statistics = []
        try:
            detail, ok = await work(), True
            if forwarded and self.federated:
                self._check_statistics()
        except (GeniError, StepFailed) as e:
            detail, ok = (e.output if isinstance(e, GeniError) else str(e)), False
        step = Step(name, ok, detail, (time.perf_counter() - started) * 1000, list(self._statistics))
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        if not ok:
            raise StepFailed(f"{name}: {detail}")

    def _check_statistics(self) -> None:
        named = {s.name for s in self._statistics}
        missing = [short_name(u) for u in self.aggregate_urns if u not in named]
        if missing:
            raise StepFailed(f"the slice manager's statistics do not name {', '.join(missing)}")

    def _value(self, struct: Any) -> Any:
        """Record the answer's statistics, then return its value (or raise its error)."""
        self._statistics = statistics_of(struct)
        return value_of(struct)

    async def _gateway(self) -> str:
        if self.gateway_view is None:
            return ""
        view = self.gateway_view()
        if inspect.isawaitable(view):
            try:
                view = await view
            except GeniError as e:
                view = f"unknown ({e.output})"
        return f"; gateway: {view}"

    def _request(self, start: float, end: float) -> str:
        if self.federated:
            return federated_request(start, end, self.aggregate_urns, CONTROLLER, VLAN_MAP)
        return build_request(start, end, controller=CONTROLLER, vlan_map=VLAN_MAP)

    def _check_count(self, slivers: list[Any]) -> None:
        expected = max(1, len(self.aggregate_urns))
        if len(slivers) != expected:
            raise StepFailed(f"expected {expected} sliver(s), got {len(slivers)}")

    async def run(self) -> bool:
        """Run every step; True if all behaved."""
        return await all_behaved(self._run)

    async def _run(self) -> None:
        state: dict[str, Any] = {}

        async def get_version() -> str:
            version = self._value(await self.client.get_version())
            if version.get("interface") != "slicemgr":
                return f"AM API {version['geni_api']}, {version.get('geni_am_type', '?')}, allocate {version['geni_allocate']}"
            peers = version.get("peers", {})
            missing = [short_name(u) for u in self.aggregate_urns if u not in peers]
            if missing:
                raise StepFailed(f"the slice manager does not list {', '.join(missing)} among its peers")
            listed = ", ".join(f"{short_name(urn)} {url}" for urn, url in sorted(peers.items()))
            return f"slice manager {short_name(version.get('urn', '?'))}, AM API {version['geni_api']}, allocate {version['geni_allocate']}; peers: {listed}"

        async def list_resources() -> str:
            ad = self._value(await self.client.list_resources())
            failed = [f"{short_name(s.name)} {s.status}" for s in self._statistics if s.status != "success"]
            if failed:
                raise StepFailed(f"not every aggregate listed its resources: {', '.join(failed)}")
            return f"{ad.count('<node ')} switches, {ad.count('<link ')} links, {ad.count('<island:booked ')} booked slots"

        async def allocate() -> str:
            start = self.now() + self.lead
            state["start"], state["end"] = start, start + self.length
            rspec = self._request(start, start + self.length)
            value = self._value(await self.client.allocate(self.slice_urn, rspec))
            slivers = value["geni_slivers"]
            statuses = {s["geni_allocation_status"] for s in slivers}
            if statuses != {"geni_allocated"}:
                raise StepFailed(f"expected geni_allocated, got {sorted(statuses)}")
            self._check_count(slivers)
            where = f" at {', '.join(short_name(s['geni_sliver_urn']) for s in slivers)}" if self.federated else ""
            return f"{len(slivers)} sliver(s){where} for {format_time(start)} .. {format_time(start + self.length)}"

        async def provision() -> str:
            users = [{"urn": self.user_urn, "keys": [DEMO_KEY]}]
            value = self._value(await self.client.provision([self.slice_urn], geni_users=users))
            statuses = {s["geni_allocation_status"] for s in value["geni_slivers"]}
            if statuses != {"geni_provisioned"}:
                raise StepFailed(f"expected geni_provisioned, got {sorted(statuses)}")
            self._check_count(value["geni_slivers"])
            return f"provisioned: SSH key, controller {CONTROLLER}, VLAN 10 untagged" + await self._gateway()

        async def until_ready() -> str:
            deadline = min(state["start"] + 10.0, state["end"] - 1.0)
            seen: list[str] = []
            while True:
                value = self._value(await self.client.status([self.slice_urn]))
                self._check_count(value["geni_slivers"])
                states = sorted({s["geni_operational_status"] for s in value["geni_slivers"]})
                errors = sorted({s["geni_error"] for s in value["geni_slivers"] if s.get("geni_error")})
                if not seen or seen[-1] != "/".join(states):
                    seen.append("/".join(states))
                if states == ["geni_ready"]:
                    return " -> ".join(seen) + await self._gateway()
                if "geni_failed" in states or self.now() >= deadline:
                    why = f" ({'; '.join(errors)})" if errors else ""
                    raise StepFailed(f"not ready: {' -> '.join(seen)}{why}")
                await self.wait(1.0)

        async def renew() -> str:
            state["end"] += self.renew_by
            value = self._value(await self.client.renew([self.slice_urn], format_time(state["end"])))
            expires = sorted({s["geni_expires"] for s in value})
            if expires != [format_time(state["end"])]:
                raise StepFailed(f"expected to expire at {format_time(state['end'])}, got {expires}")
            self._check_count(value)
            return f"slot now ends {format_time(state['end'])}"

        async def after_end() -> str:
            await self.wait(max(0.0, state["end"] - self.now()) + 1.5)
            try:
                value = self._value(await self.client.status([self.slice_urn]))
            except GeniError as e:
                if e.code != GeniCode.SEARCHFAILED:
                    raise
                if self.federated:
                    answered = [short_name(s.name) for s in self._statistics if s.code == GeniCode.SEARCHFAILED]
                    return f"slot over: no live slivers (SEARCHFAILED from {', '.join(answered)})" + await self._gateway()
                return f"slot over: {e.output}" + await self._gateway()
            live = [s for s in value["geni_slivers"] if s["geni_allocation_status"] != "geni_unallocated"]
            if live:
                raise StepFailed(f"still live after the slot: {live}")
            return "slot over, nothing live" + await self._gateway()

        async def delete() -> str:
            value = self._value(await self.client.delete([self.slice_urn]))
            return f"{len(value)} sliver(s) released (the ended slot needs none)"

        await self._step("GetVersion", get_version, forwarded=False)
        await self._step("ListResources", list_resources)
        await self._step("Allocate", allocate)
        await self._step("Provision", provision)
        await self._step("Status until ready", until_ready)
        await self._step("Renew", renew)
        await self._step("Status after the slot", after_end)
        await self._step("Delete", delete)


def render_steps(steps: list[Step]) -> str:
    """A plain-text table of the steps."""
    width = max([len(s.name) for s in steps] + [4])
    lines = [f"{'step':<{width}}  {'ok':<4}  {'ms':>7}  result", f"{'-' * width}  ----  {'-' * 7}  {'-' * 40}"]
    for step in steps:
        lines.append(f"{step.name:<{width}}  {'yes' if step.ok else 'NO':<4}  {step.millis:7.1f}  {step.detail}")
    return "\n".join(lines)


def _cell(entry: AggregateStatistics) -> str:
    code = f" {entry.code_name}" if entry.code_name else ""
    return f"{entry.status}{code} {entry.elapsed * 1000:.0f} ms"


def render_statistics(steps: list[Step], max_reason: int = 100) -> str:
    """
    A plain-text table of the slice manager's statistics: a row per step
    that has them, a column per aggregate (status, GENI code of a
    failure, elapsed time), then a line per aggregate that did not
    succeed, saying why. Empty when no step has statistics.
    """
    rows = [s for s in steps if s.statistics]
    if not rows:
        return ""
    names: list[str] = []
    for step in rows:
        for entry in step.statistics:
            if entry.name not in names:
                names.append(entry.name)
    width = max([len(s.name) for s in rows] + [4])
    cells = {(step.name, e.name): _cell(e) for step in rows for e in step.statistics}
    widths = [max([len(short_name(n))] + [len(cells.get((s.name, n), "-")) for s in rows]) for n in names]
    header = "  ".join([f"{'step':<{width}}"] + [f"{short_name(n):<{w}}" for n, w in zip(names, widths)])
    rule = "  ".join(["-" * width] + ["-" * w for w in widths])
    lines = [header.rstrip(), rule]
    for step in rows:
        row = "  ".join([f"{step.name:<{width}}"] + [f"{cells.get((step.name, n), '-'):<{w}}" for n, w in zip(names, widths)])
        lines.append(row.rstrip())
    for step in rows:
        for entry in step.statistics:
            if entry.status != "success" and entry.reason:
                reason = entry.reason if len(entry.reason) <= max_reason else entry.reason[: max_reason - 3] + "..."
                lines.append(f"  {step.name}, {short_name(entry.name)}: {reason}")
    return "\n".join(lines)
