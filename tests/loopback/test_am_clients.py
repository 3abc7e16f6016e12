"""
What GENI clients send an aggregate manager, over real TLS on 127.0.0.1:
restarting slivers booked for later, comparing request and manifest
components, delegated credentials labelled as omni labels them, and
credentials sent under the wrong type.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lxml import etree
from twisted.internet.utils import getProcessOutputAndValue

from geniam.client import value_of
from geniam.rspec.namespaces import ISLAND_NS, RSPEC_NS
from geniam.timeutil import format_time
from tests.loopback.test_am import HOUR, KEY, AggregateHarness
from tests.fixturepaths import REPO_ROOT


class RestartBeforeSlotTests(AggregateHarness):
    """geni_restart on a provisioned sliver whose slot has not started."""

    async def provisioned_for_later(self) -> tuple[Any, str, str, float]:
        """Start the aggregate; provision alice a slot starting in an hour; return client, slice, sliver and now."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        allocated = value_of(await client.allocate(slice_urn, self.request(now + HOUR, now + 2 * HOUR)))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        users = [{"urn": self.fed.domain.user_urn("alice"), "keys": [KEY]}]
        value_of(await client.provision([sliver], geni_users=users))
        return client, slice_urn, sliver, now

    async def test_restart_before_slot(self) -> None:
        """It succeeds as geni_start does (clearing a stop), says when the slot applies it, and the slot does."""
        client, slice_urn, sliver, now = await self.provisioned_for_later()
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
        client, slice_urn, sliver, _ = await self.provisioned_for_later()
        stopped = await client.perform([sliver], "geni_stop")
        self.assertEqual(stopped["output"], "")
        self.assertEqual((await client.status([slice_urn]))["output"], "")
        self.clock.advance(HOUR + 1)
        await self.sweep()
        self.assertEqual(self.gateway.users, [])


def components(document: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The C{(client_id, component_id)} of every top-level node and link of an RSpec, in order."""
    root = etree.fromstring(document.encode())
    pairs = [
        [(e.get("client_id", ""), e.get("component_id", "")) for e in root.iterchildren(f"{{{RSPEC_NS}}}{tag}")]
        for tag in ("node", "link")
    ]
    return pairs[0], pairs[1]


class ManifestComponentTests(AggregateHarness):
    """GENI tools compare the components of request and manifest: they must be the same."""

    async def test_island_request(self) -> None:
        """A request for the island gets back a manifest naming exactly its node; the switches are in the extension."""
        await self.start()
        client = self.alice()
        now = self.clock.seconds()
        slice_urn = self.fed.slice_urn("exp1")
        request = self.request(now + HOUR, now + 2 * HOUR)
        allocated = value_of(await client.allocate(slice_urn, request))
        manifest = allocated["geni_rspec"]
        self.assertEqual(components(manifest), components(request))
        self.assertEqual(components(value_of(await client.describe([slice_urn]))["geni_rspec"]), components(request))
        root = etree.fromstring(manifest.encode())
        [node] = root.iterchildren(f"{{{RSPEC_NS}}}node")
        self.assertEqual(node.get("sliver_id"), allocated["geni_slivers"][0]["geni_sliver_urn"])
        switches = [e.get("component_id") for e in root.iterchildren(f"{{{ISLAND_NS}}}switch")]
        self.assertEqual(len(switches), len(self.gateway.switches))

    async def test_bound_request_from_the_advertisement(self) -> None:
        """geniam rspec request --advertisement URL binds every switch and link; the manifest names the same."""
        await self.start()
        fed = self.fed
        folder = Path(self.mktemp())
        folder.mkdir()
        usercred = folder / "alice-usercred.xml"
        usercred.write_text(fed.user_credential("alice"))
        now = self.clock.seconds()
        env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))

        async def rspec_request(start: float, end: float) -> tuple[bytes, bytes, int]:
            return await getProcessOutputAndValue(
                sys.executable,
                ["-m", "geniam", "rspec", "request", "--start", format_time(start), "--end", format_time(end),
                 "--advertisement", self.service.url, "--controller", "127.0.0.1:6633",
                 "--certificate", str(fed.domain.cert_path("users", "alice")),
                 "--private-key", str(fed.domain.key_path("users", "alice")),
                 "--trust-roots", str(fed.domain.roots_dir), "--credential", str(usercred)],
                env=env,
            )

        out, err, code = await rspec_request(now + HOUR, now + 2 * HOUR)
        self.assertEqual(code, 0, err)
        request = out.decode()
        nodes, links = components(request)
        self.assertEqual(sorted(c for _, c in nodes), sorted(f"{self.service.urn.split('+authority')[0]}+node+{d}" for d in self.gateway.switches))
        self.assertTrue(links)
        client = self.alice()
        allocated = value_of(await client.allocate(fed.slice_urn("exp1"), request))
        self.assertEqual(components(allocated["geni_rspec"]), (nodes, links))
        sliver = allocated["geni_slivers"][0]["geni_sliver_urn"]
        root = etree.fromstring(allocated["geni_rspec"].encode())
        self.assertEqual({n.get("sliver_id") for n in root.iterchildren(f"{{{RSPEC_NS}}}node")}, {sliver})

        out, err, code = await rspec_request(now + 90 * 60, now + 3 * HOUR)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, b"")
        self.assertIn(f"already booked from {format_time(now + HOUR)}".encode(), err)
        self.assertEqual(await self.service.store.count(), 1)
