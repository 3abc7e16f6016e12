"""
What GENI clients send an aggregate manager, over real TLS on 127.0.0.1:
restarting slivers booked for later, comparing request and manifest
components, delegated credentials labelled as omni labels them, and
credentials sent under the wrong type.
"""

from __future__ import annotations

from geniam.client import value_of
from geniam.timeutil import format_time
from tests.test_am_loopback import HOUR, KEY, AggregateHarness


class RestartBeforeSlotTests(AggregateHarness):
    """geni_restart on a provisioned sliver whose slot has not started."""

    async def test_restart_before_slot(self) -> None:
        """It succeeds as geni_start does (clearing a stop), says when the slot applies it, and the slot does."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        allocated = value_of(await client.allocate(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        users = [{"urn": self.fed.domain.user_urn("alice"), "keys": [KEY]}]
        value_of(await client.provision([sliver], geni_users=users))
        value_of(await client.perform([sliver], "geni_stop"))

        struct = await client.perform([sliver], "geni_restart")
        [info] = value_of(struct)
        self.assertEqual(info["geni_operational_status"], "geni_notready")
        self.assertIn(sliver, struct["output"])
        self.assertIn(f"applied at {format_time(now + HOUR)}", struct["output"])
        self.assertEqual(self.gateway.users, [])
        status = await client.status([slice_urn])
        self.assertIn(f"applied at {format_time(now + HOUR)}", status["output"])

        self.clock.advance(HOUR + 1)
        await self.sweep()
        status = await client.status([slice_urn])
        self.assertEqual(value_of(status)["geni_slivers"][0]["geni_operational_status"], "geni_ready")
        self.assertEqual(status["output"], "")
        self.assertEqual(self.gateway.users, [KEY])

    async def test_stopped_sliver_is_not_announced(self) -> None:
        """A stopped sliver before its slot is not said to wait for it: the slot will not apply it."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        allocated = value_of(await client.allocate(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        value_of(await client.provision([sliver]))
        stopped = await client.perform([sliver], "geni_stop")
        self.assertEqual(stopped["output"], "")
        self.assertEqual((await client.status([slice_urn]))["output"], "")
        self.clock.advance(HOUR + 1)
        await self.sweep()
        self.assertEqual(self.gateway.users, [])
