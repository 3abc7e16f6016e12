# -*- test-case-name: tests.test_demotransaction -*-
"""
The experiment C{geniam demo --transaction} runs: two islands booked
through a slice manager in one transaction, and a competing slice refused
while it is open.

Steps (all through the slice manager, each checked):

  1. BeginTransaction with a request naming both islands: each aggregate
     holds its part of the slot (the answer carries C{commit_by});
  2. a competing slice's Allocate of the same slot on both islands is
     refused with UNAVAILABLE;
  3. Status of the slice: nothing shows yet (SEARCHFAILED everywhere);
  4. CommitTransaction: both islands allocated at once;
  5. Status: one allocated sliver per island;
  6. a plain Allocate of a later slot for another slice, which the slice
     manager carries out in two phases (C{geniam_allocation_path});
  7. Delete of both slices.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from geniam.client import AMClient
from geniam.errors import GeniCode
from geniam.demo import CONTROLLER, VLAN_MAP, Experiment, StepFailed, federated_request, statistics_of
from geniam.managers.twophase import PATH_FIELD
from geniam.timeutil import format_time


@dataclass
class TransactionExperiment(Experiment):
    """
    Runs the transaction steps; C{rival} calls the slice manager for the
    competing slice C{rival_slice_urn}.
    """

    rival: AMClient | None = None
    rival_slice_urn: str = ""

    @classmethod
    def competing(cls, experiment: Experiment, rival: AMClient, rival_slice_urn: str) -> TransactionExperiment:
        """The transaction experiment with C{experiment}'s settings, C{rival} competing for slice C{rival_slice_urn}."""
        settings = {f.name: getattr(experiment, f.name) for f in fields(experiment) if f.init}
        return cls(**settings, rival=rival, rival_slice_urn=rival_slice_urn)

    def _federated_request(self, start: float) -> str:
        return federated_request(start, start + self.length, self.aggregate_urns, CONTROLLER, VLAN_MAP)

    async def _run(self) -> None:
        if self.rival is None or not self.federated:
            raise StepFailed("a transaction experiment needs a slice manager and a competing client")
        rival = self.rival
        start = self.now() + self.lead
        request = self._federated_request(start)

        async def begin() -> str:
            value = self._value(await self.client.begin_transaction(self.slice_urn, request))
            self._check_count(value["geni_slivers"])
            return f"both islands hold {format_time(start)} for the slice; commit by {value['commit_by']}"

        async def competitor() -> str:
            struct = await rival.allocate(self.rival_slice_urn, request)
            self._statistics = statistics_of(struct)
            code = struct["code"]["geni_code"]
            if code != GeniCode.UNAVAILABLE:
                raise StepFailed(f"the competing slice was not refused (geni_code {code})")
            return "the competing slice is refused: UNAVAILABLE (the slot is held by the open transaction)"

        async def invisible() -> str:
            struct = await self.client.status([self.slice_urn])
            self._statistics = statistics_of(struct)
            if struct["code"]["geni_code"] != GeniCode.SEARCHFAILED:
                raise StepFailed("the slice shows slivers before the commit")
            return "nothing shows before the commit (SEARCHFAILED at every aggregate)"

        async def commit() -> str:
            value = self._value(await self.client.commit_transaction(self.slice_urn))
            self._check_count(value["geni_slivers"])
            return "committed: " + ", ".join(s["geni_allocation_status"] for s in value["geni_slivers"])

        async def status() -> str:
            value = self._value(await self.client.status([self.slice_urn]))
            self._check_count(value["geni_slivers"])
            return "allocated on both islands: " + ", ".join(s["geni_allocation_status"] for s in value["geni_slivers"])

        async def two_phase_allocate() -> str:
            struct = await rival.allocate(self.rival_slice_urn, self._federated_request(start + 2 * self.length))
            value = self._value(struct)
            self._check_count(value["geni_slivers"])
            return f"a later slot for the competing slice, allocated by the {struct.get(PATH_FIELD, '?')} path"

        async def delete() -> str:
            deleted = self._value(await self.client.delete([self.slice_urn]))
            deleted += self._value(await rival.delete([self.rival_slice_urn]))
            return f"deleted {len(deleted)} slivers of both slices"

        await self._step("BeginTransaction", begin)
        await self._step("Competing Allocate", competitor)
        await self._step("Status before commit", invisible, forwarded=False)
        await self._step("CommitTransaction", commit)
        await self._step("Status", status)
        await self._step("Allocate (two-phase)", two_phase_allocate)
        await self._step("Delete", delete)


def rival_client(federation: Any, server: str, user: str, slice_name: str) -> AMClient:
    """C{user}'s client for slice C{slice_name} at the slice manager C{server}, with the credential delegated to it."""
    credentials = (federation.user_credential(user), federation.delegated_slice_credential(slice_name, user))
    client: AMClient = federation.client(user, server, credentials)
    return client

