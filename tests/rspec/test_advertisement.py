"""
Tests for L{geniam.rspec.advertisement}, L{geniam.rspec.resources} and
L{geniam.rspec.namespaces}.
"""

from __future__ import annotations

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec.advertisement import build_advertisement, is_busy
from geniam.rspec.island import read_schedule
from geniam.rspec.namespaces import ISLAND_NS, OPSTATE_NS, RSPEC_NS, rspec_version_struct
from geniam.rspec.parser import parse_rspec
from geniam.rspec.resources import IslandLink, IslandResources, parse_dpid, parse_link
from tests.rspec.test_fixtures import AM, DPID1, DPID2, DPID3, END, LINK12, LINK23, START, island, xml

G = f"{{{RSPEC_NS}}}"
O = f"{{{OPSTATE_NS}}}"


class AdvertisementTests(SynchronousTestCase):
    """The advertisement describes switches, links, states and the schedule."""

    def test_root(self) -> None:
        """The root is a GENI v3 advertisement that our own strict parser accepts."""
        text = build_advertisement(island(), [], START, expires=END)
        root = parse_rspec(text, "advertisement")
        self.assertEqual(root.get("generated"), "2027-01-15T08:00:00Z")
        self.assertEqual(root.get("expires"), "2027-01-15T10:00:00Z")

    def test_nodes(self) -> None:
        """One exclusive node per switch, named under the aggregate's authority."""
        root = xml(build_advertisement(island(), [], START))
        nodes = root.findall(f"{G}node")
        self.assertEqual(
            [n.get("component_id") for n in nodes],
            [f"urn:publicid:IDN+island.example+node+{d}" for d in (DPID1, DPID2, DPID3)],
        )
        for node, dpid in zip(nodes, (DPID1, DPID2, DPID3)):
            self.assertEqual(node.get("component_manager_id"), AM)
            self.assertEqual(node.get("component_name"), dpid)
            self.assertEqual(node.get("exclusive"), "true")
            self.assertEqual(node.find(f"{G}hardware_type").get("name"), "openflow-switch")  # type: ignore[union-attr]
            self.assertEqual(node.find(f"{G}sliver_type").get("name"), "island")  # type: ignore[union-attr]
            self.assertEqual(node.find(f"{G}available").get("now"), "true")  # type: ignore[union-attr]
        ports = [i.get("component_name") for i in nodes[1].findall(f"{G}interface")]
        self.assertEqual(ports, [f"{DPID2}:3", f"{DPID2}:4"])

    def test_links(self) -> None:
        """One link per island link, with its component manager and both interfaces."""
        root = xml(build_advertisement(island(), [], START))
        links = root.findall(f"{G}link")
        self.assertEqual([link.get("component_name") for link in links], [LINK12, LINK23])
        first = links[0]
        self.assertEqual(first.get("component_id"), f"urn:publicid:IDN+island.example+link+{LINK12}")
        self.assertEqual(first.find(f"{G}component_manager").get("name"), AM)  # type: ignore[union-attr]
        refs = [r.get("component_id") for r in first.findall(f"{G}interface_ref")]
        self.assertEqual(
            refs,
            [
                f"urn:publicid:IDN+island.example+interface+{DPID1}:1",
                f"urn:publicid:IDN+island.example+interface+{DPID2}:3",
            ],
        )
        declared = {i.get("component_id") for i in root.iter(f"{G}interface")}
        self.assertTrue(set(refs) <= declared)

    def test_opstate(self) -> None:
        """The opstate extension gives the start state and each action's next state."""
        root = xml(build_advertisement(island(), [], START))
        block = root.find(f"{O}rspec_opstate")
        assert block is not None
        self.assertEqual(block.get("aggregate_manager_id"), AM)
        self.assertEqual(block.get("start"), "geni_notready")
        self.assertEqual(block.find(f"{O}sliver_type").get("name"), "island")  # type: ignore[union-attr]
        transitions = {
            (state.get("name"), action.get("name")): action.get("next")
            for state in block.findall(f"{O}state")
            for action in state.findall(f"{O}action")
        }
        self.assertEqual(
            transitions,
            {
                ("geni_notready", "geni_start"): "geni_ready",
                ("geni_ready", "geni_stop"): "geni_notready",
                ("geni_ready", "geni_restart"): "geni_ready",
                ("geni_ready", "geni_update_users"): "geni_ready",
            },
        )

    def test_schedule(self) -> None:
        """The schedule lists current and future slots in order, and drops ended ones."""
        booked = [(START + 7200, START + 9000), (START - 3600, START - 60), (START - 60, START + 60)]
        root = xml(build_advertisement(island(), booked, START))
        schedule = root.find(f"{{{ISLAND_NS}}}schedule")
        assert schedule is not None
        self.assertEqual(schedule.get("component_manager_id"), AM)
        self.assertEqual(read_schedule(schedule), [(START - 60, START + 60), (START + 7200, START + 9000)])

    def test_schedule_names_no_slice(self) -> None:
        """Nothing in the advertisement names a slice or sliver."""
        text = build_advertisement(island(), [(START, END)], START - 10)
        self.assertNotIn("+slice+", text)
        self.assertNotIn("sliver", text.replace("sliver_type", ""))

    def test_busy_marks_unavailable(self) -> None:
        """While a slot holds the island its switches are shown not available now."""
        root = xml(build_advertisement(island(), [(START, END)], START + 1))
        self.assertEqual({a.get("now") for a in root.iter(f"{G}available")}, {"false"})
        self.assertEqual(len(root.findall(f"{G}node")), 3)

    def test_slot_end_is_exclusive(self) -> None:
        """At a slot's end the island is free again."""
        root = xml(build_advertisement(island(), [(START, END)], END))
        self.assertEqual({a.get("now") for a in root.iter(f"{G}available")}, {"true"})

    def test_available_only_when_busy(self) -> None:
        """geni_available while busy leaves out switches and links but keeps the schedule."""
        root = xml(build_advertisement(island(), [(START, END)], START + 1, available_only=True))
        self.assertEqual(root.findall(f"{G}node"), [])
        self.assertEqual(root.findall(f"{G}link"), [])
        self.assertIsNotNone(root.find(f"{{{ISLAND_NS}}}schedule"))

    def test_available_only_when_free(self) -> None:
        """geni_available while free shows everything."""
        root = xml(build_advertisement(island(), [(END, END + 60)], START, available_only=True))
        self.assertEqual(len(root.findall(f"{G}node")), 3)
        self.assertEqual(len(root.findall(f"{G}link")), 2)

    def test_is_busy(self) -> None:
        """is_busy holds from a slot's start, inclusive, to its end, exclusive."""
        self.assertTrue(is_busy([(10, 20)], 10))
        self.assertFalse(is_busy([(10, 20)], 20))
        self.assertFalse(is_busy([], 10))

    def test_geni_lib_reads_it(self) -> None:
        """geni-lib, a common client library, reads the nodes and links."""
        try:
            from geni.rspec.pgad import Advertisement
        except ImportError as e:
            raise SkipTest(f"geni-lib is not usable here: {e}")
        ad = Advertisement(xml=build_advertisement(island(), [], START))
        self.assertEqual([n.component_id for n in ad.nodes], [island().node_urn(d) for d in (DPID1, DPID2, DPID3)])
        self.assertEqual(len(list(ad.links)), 2)


class ResourcesTests(SynchronousTestCase):
    """DPIDs, links and the island description are validated."""

    def test_dpid(self) -> None:
        """DPIDs are eight hex octets, normalised to lower case."""
        self.assertEqual(parse_dpid("00:00:00:00:00:00:0A:FF"), "00:00:00:00:00:00:0a:ff")
        for bad in ("00:00:00:00:00:00:00", "00:00:00:00:00:00:00:0g", "1", 7):
            error = self.assertRaises(GeniError, parse_dpid, bad)
            self.assertEqual(error.code, GeniCode.BADARGS)

    def test_link(self) -> None:
        """Links parse as DPID:port-DPID:port."""
        self.assertEqual(parse_link(LINK12), IslandLink(DPID1, 1, DPID2, 3))
        self.assertEqual(str(parse_link(LINK12)), LINK12)
        for bad in (DPID1, f"{DPID1}:1", f"{DPID1}:x-{DPID2}:1", f"{DPID1}:0-{DPID2}:1", f"{DPID1}-{DPID2}"):
            self.assertRaises(GeniError, parse_link, bad)

    def test_resources_validated(self) -> None:
        """IslandResources refuses bad URNs, DPIDs, links and gateway settings."""
        self.assertRaises(GeniError, IslandResources.create, "not-a-urn")
        self.assertRaises(GeniError, IslandResources.create, AM, ["zz"])
        self.assertRaises(GeniError, IslandResources.create, AM, [DPID1], ["x"])
        self.assertRaises(GeniError, IslandResources.create, AM, [DPID1], [], gateway_host="a b")
        self.assertRaises(GeniError, IslandResources.create, AM, [DPID1], [], gateway_port=0)
        self.assertRaises(GeniError, IslandResources.create, AM, [DPID1], [], hardware_type="bad type")
        self.assertRaises(GeniError, IslandResources.create, AM, DPID1)

    def test_resources_normalised(self) -> None:
        """Duplicates go, DPIDs are lower-cased, link strings become IslandLinks."""
        resources = IslandResources.create(AM, [DPID1, DPID1.upper(), DPID2], [LINK12, LINK12])
        self.assertEqual(resources.switches, (DPID1, DPID2))
        self.assertEqual(resources.links, (IslandLink(DPID1, 1, DPID2, 3),))
        self.assertEqual(resources.authority, "island.example")
        self.assertEqual(resources.ports(DPID2), [3])


class VersionStructTests(SynchronousTestCase):
    """The GetVersion RSpec version structs."""

    def test_structs(self) -> None:
        """Both structs name GENI 3 with all five keys and the island extension."""
        for kind, schema in (("ad", "ad.xsd"), ("request", "request.xsd")):
            struct = rspec_version_struct(kind)
            self.assertEqual(set(struct), {"type", "version", "schema", "namespace", "extensions"})
            self.assertEqual((struct["type"], struct["version"]), ("GENI", "3"))
            self.assertTrue(struct["schema"].endswith(schema))
            self.assertIn(ISLAND_NS, struct["extensions"])
        self.assertRaises(ValueError, rspec_version_struct, "manifest")
