# -*- test-case-name: tests.test_demo -*-
"""
The experiment C{geniam demo} runs: what a user does with an island, step
by step, each step checked and recorded for a readable table.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from geniam.client import AMClient, value_of
from geniam.errors import GeniCode, GeniError
from geniam.rspec.request import build_request
from geniam.timeutil import format_time

DEMO_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVuaWFtLWRlbW8ta2V5LW5vdC1mb3ItdXNlLWFueXdoZXJl demo@geniam"


@dataclass
class Step:
    """One checked step of the experiment."""

    name: str
    ok: bool
    detail: str
    millis: float


class StepFailed(Exception):
    """A step did not behave as it should."""


@dataclass
class Experiment:
    """
    Runs the lifecycle of one booking against an AM API v3 endpoint.

    @ivar client: calls the aggregate (or slice manager) as the user.
    @ivar slice_urn: the user's slice.
    @ivar user_urn: the user's URN (for C{geni_users}).
    @ivar now: the current time (the clock the servers use).
    @ivar wait: waits that many seconds of that clock.
    @ivar gateway_view: reports what the gateway has applied (for the table),
        at once or through an awaitable (asking the agent), if known.
    @ivar lead: how far ahead the slot starts; C{length}: how long it lasts.
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

    async def _step(self, name: str, work: Callable[[], Awaitable[str]]) -> None:
        started = time.perf_counter()
        try:
            detail, ok = await work(), True
        except (GeniError, StepFailed) as e:
            detail, ok = (e.output if isinstance(e, GeniError) else str(e)), False
        step = Step(name, ok, detail, (time.perf_counter() - started) * 1000)
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        if not ok:
            raise StepFailed(f"{name}: {detail}")

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

    async def run(self) -> bool:
        """Run every step; True if all behaved."""
        try:
            await self._run()
        except StepFailed:
            return False
        return True

    async def _run(self) -> None:
        state: dict[str, Any] = {}

        async def get_version() -> str:
            version = value_of(await self.client.get_version())
            return f"AM API {version['geni_api']}, {version.get('geni_am_type', '?')}, allocate {version['geni_allocate']}"

        async def list_resources() -> str:
            ad = value_of(await self.client.list_resources())
            return f"{ad.count('<node ')} switches, {ad.count('<link ')} links, {ad.count('<island:booked ')} booked slots"

        async def allocate() -> str:
            start = self.now() + self.lead
            state["start"], state["end"] = start, start + self.length
            rspec = build_request(start, start + self.length, controller="127.0.0.1:6633", vlan_map={"10": "0xffff"})
            value = value_of(await self.client.allocate(self.slice_urn, rspec))
            slivers = value["geni_slivers"]
            state["slivers"] = [s["geni_sliver_urn"] for s in slivers]
            statuses = {s["geni_allocation_status"] for s in slivers}
            if statuses != {"geni_allocated"}:
                raise StepFailed(f"expected geni_allocated, got {sorted(statuses)}")
            return f"{len(slivers)} sliver(s) for {format_time(start)} .. {format_time(start + self.length)}"

        async def provision() -> str:
            users = [{"urn": self.user_urn, "keys": [DEMO_KEY]}]
            value = value_of(await self.client.provision([self.slice_urn], geni_users=users))
            statuses = {s["geni_allocation_status"] for s in value["geni_slivers"]}
            if statuses != {"geni_provisioned"}:
                raise StepFailed(f"expected geni_provisioned, got {sorted(statuses)}")
            return "provisioned: SSH key, controller 127.0.0.1:6633, VLAN 10 untagged" + await self._gateway()

        async def until_ready() -> str:
            deadline = min(state["start"] + 10.0, state["end"] - 1.0)
            seen: list[str] = []
            while True:
                value = value_of(await self.client.status([self.slice_urn]))
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
            value = value_of(await self.client.renew([self.slice_urn], format_time(state["end"])))
            expires = sorted({s["geni_expires"] for s in value})
            if expires != [format_time(state["end"])]:
                raise StepFailed(f"expected to expire at {format_time(state['end'])}, got {expires}")
            return f"slot now ends {format_time(state['end'])}"

        async def after_end() -> str:
            await self.wait(max(0.0, state["end"] - self.now()) + 1.5)
            struct = await self.client.status([self.slice_urn])
            try:
                value = value_of(struct)
            except GeniError as e:
                if e.code != GeniCode.SEARCHFAILED:
                    raise
                return f"slot over: {e.output}" + await self._gateway()
            live = [s for s in value["geni_slivers"] if s["geni_allocation_status"] != "geni_unallocated"]
            if live:
                raise StepFailed(f"still live after the slot: {live}")
            return "slot over, nothing live" + await self._gateway()

        async def delete() -> str:
            value = value_of(await self.client.delete([self.slice_urn]))
            return f"{len(value)} sliver(s) released (the ended slot needs none)"

        await self._step("GetVersion", get_version)
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
