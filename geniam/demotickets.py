# -*- test-case-name: tests.test_demotickets -*-
"""
The ticket walk of C{geniam demo --tickets}: one slice taken through the
ProtoGENI component manager's state diagram on one aggregate, GetTicket,
Resolve, RedeemTicket, UpdateSliver (a slot overlapping the sliver's own),
RedeemTicket, DeleteSliver, DeleteSlice, with the slice's state (as
Resolve reports it) after each step.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from geniam.client import AMClient
from geniam.demo import CONTROLLER, VLAN_MAP, Step, StepFailed, all_behaved
from geniam.errors import GeniCode, GeniError
from geniam.rspec.request import build_request


def cm_value(struct: Any) -> Any:
    """The C{value} of a component manager answer C{{code, value, output}}, or its error raised as a L{GeniError}."""
    if not isinstance(struct, dict) or not isinstance(struct.get("code"), int):
        raise GeniError(GeniCode.ERROR, f"not a component manager answer: {str(struct)[:200]}")
    if struct["code"] != 0:
        try:
            code = GeniCode(struct["code"])
        except ValueError:
            code = GeniCode.ERROR
        raise GeniError(code, str(struct.get("output", "")))
    return struct.get("value")


@dataclass
class TicketWalk:
    """
    Walks one slice through the component manager's diagram.

    @ivar client: calls the aggregate's component manager endpoint as the user.
    @ivar slice_urn: the user's slice; C{credentials} the slice credential(s), as plain strings.
    @ivar ssh_key: the public key RedeemTicket sends.
    @ivar now: the servers' clock; the slot starts C{lead} seconds ahead
        and lasts C{length}; the update keeps its start and doubles its length.
    """

    client: AMClient
    slice_urn: str
    credentials: Sequence[str]
    ssh_key: str
    now: Callable[[], float]
    lead: float = 60.0
    length: float = 600.0
    steps: list[Step] = field(default_factory=list)
    on_step: Callable[[Step], None] | None = None

    async def _call(self, method: str, **args: Any) -> Any:
        return cm_value(await self.client.call(method, {**args, "credentials": list(self.credentials)}))

    async def state(self) -> dict[str, Any]:
        """The slice's state as Resolve reports it (changes nothing)."""
        resolved: dict[str, Any] = await self._call("Resolve", urn=self.slice_urn)
        return resolved

    async def _step(self, name: str, work: Callable[[], Awaitable[str]], expected: str) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            detail = await work()
            resolved = await self.state()
            if resolved.get("state") != expected:
                raise StepFailed(f"the slice is in state {resolved.get('state')!r}, not {expected!r}")
            ok = True
        except (GeniError, StepFailed) as e:
            detail, ok, resolved = (e.output if isinstance(e, GeniError) else str(e)), False, {}
        if ok:
            detail = f"state: {expected}; {detail}"
        step = Step(name, ok, detail, (time.perf_counter() - started) * 1000)
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)
        if not ok:
            raise StepFailed(f"{name}: {detail}")
        return resolved

    async def run(self) -> bool:
        """Take every step; True if all behaved."""
        return await all_behaved(self._run)

    async def _run(self) -> None:
        start = self.now() + self.lead
        first = build_request(start, start + self.length, controller=CONTROLLER, vlan_map=VLAN_MAP)
        longer = build_request(start, start + 2 * self.length, controller=CONTROLLER, vlan_map=VLAN_MAP)
        held: dict[str, str] = {}

        async def get_ticket() -> str:
            held["ticket"] = await self._call("GetTicket", slice_urn=self.slice_urn, rspec=first)
            return "a signed ticket for the slot"

        async def resolve() -> str:
            return f"ticket {(await self.state()).get('ticket_urn')}"

        async def redeem() -> str:
            keys = [{"type": "ssh", "key": self.ssh_key}]
            _, manifest = await self._call("RedeemTicket", slice_urn=self.slice_urn, ticket=held.pop("ticket"), keys=keys)
            if "<rspec" not in manifest:
                raise StepFailed("RedeemTicket returned no manifest")
            return f"sliver {(await self.state()).get('sliver_urn')}"

        async def update() -> str:
            sliver_urn = (await self.state())["sliver_urn"]
            held["ticket"] = await self._call("UpdateSliver", sliver_urn=sliver_urn, rspec=longer)
            return "a ticket for the slot twice as long, overlapping the sliver's own; the sliver runs on"

        async def delete_sliver() -> str:
            sliver_urn = (await self.state())["sliver_urn"]
            held["ticket"] = await self._call("DeleteSliver", sliver_urn=sliver_urn)
            return "the sliver is gone; a new ticket promises the rest of its slot"

        async def delete_slice() -> str:
            await self._call("DeleteSlice", slice_urn=self.slice_urn)
            return "nothing of the slice is left here"

        await self._step("GetTicket", get_ticket, "ticket")
        await self._step("Resolve", resolve, "ticket")
        await self._step("RedeemTicket", redeem, "sliver")
        await self._step("UpdateSliver", update, "sliver and ticket")
        await self._step("RedeemTicket (the update)", redeem, "sliver")
        await self._step("DeleteSliver", delete_sliver, "ticket")
        await self._step("DeleteSlice", delete_slice, "neither sliver nor ticket")
