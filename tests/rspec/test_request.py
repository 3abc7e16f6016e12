"""
Tests for L{geniam.rspec.request} and the island extension
(L{geniam.rspec.island}): writing requests and reading them strictly.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec.island import read_schedule
from geniam.rspec.namespaces import ISLAND_NS, RSPEC_NS
from geniam.rspec.request import IslandRequest, build_request, island_client_ids, parse_request
from geniam.rspec.split import split_request
from geniam.timeutil import format_time
from tests.rspec.test_fixtures import AM, DPID1, END, OTHER_AM, START, THIRD_AM, request_document, xml

SLOT = f'<island:slot start="{format_time(START)}" end="{format_time(END)}"/>'


class BuildRequestTests(SynchronousTestCase):
    """L{build_request} writes a GENI v3 request with the island extension."""

    def test_document_shape(self) -> None:
        """The request is a GENI v3 <rspec type="request"> with a node and island elements."""
        root = xml(build_request(START, END, "192.0.2.1:6633", {"10": "0xffff", "30": "20"}, AM))
        self.assertEqual(root.tag, f"{{{RSPEC_NS}}}rspec")
        self.assertEqual(root.get("type"), "request")
        node = root.find(f"{{{RSPEC_NS}}}node")
        assert node is not None
        self.assertEqual(node.get("client_id"), "island")
        self.assertEqual(node.get("component_manager_id"), AM)
        self.assertEqual(node.get("exclusive"), "true")
        slot = root.find(f"{{{ISLAND_NS}}}slot")
        assert slot is not None
        self.assertEqual((slot.get("start"), slot.get("end")), (format_time(START), format_time(END)))
        self.assertEqual(slot.get("component_manager_id"), AM)
        controller = root.find(f"{{{ISLAND_NS}}}controller")
        assert controller is not None
        self.assertEqual(controller.get("address"), "192.0.2.1:6633")
        vlans = [(v.get("testbed"), v.get("island")) for v in root.iter(f"{{{ISLAND_NS}}}vlan")]
        self.assertEqual(vlans, [("10", "0xffff"), ("30", "20")])

    def test_round_trip(self) -> None:
        """What build_request writes, parse_request reads back."""
        text = build_request(START, END, "[2001:db8::1]:6653", {30: "20", "10": "untagged"}, AM)
        request = parse_request(text, AM)
        self.assertEqual(request.slot, (START, END))
        self.assertEqual(request.controller, "[2001:db8::1]:6653")
        self.assertEqual(request.vlan_map, {"10": "0xffff", "30": "20"})
        self.assertEqual(request.node_client_ids, ("island",))
        self.assertEqual(request.component_manager_ids, (AM,))
        self.assertEqual(request.foreign_component_manager_ids, ())

    def test_minimal(self) -> None:
        """Without controller, VLANs or aggregate only the node and slot are written."""
        text = build_request(START, END)
        root = xml(text)
        self.assertIsNone(root.find(f"{{{ISLAND_NS}}}controller"))
        self.assertIsNone(root.find(f"{{{ISLAND_NS}}}vlan"))
        self.assertNotIn("component_manager_id", text)
        request = parse_request(text, AM)
        self.assertEqual(request, IslandRequest(START, END, node_client_ids=("island",)))

    def test_fractions_dropped(self) -> None:
        """Times are written in whole seconds."""
        request = parse_request(build_request(START + 0.75, END + 0.25), AM)
        self.assertEqual(request.slot, (START, END))

    def test_bad_slot(self) -> None:
        """An empty or inverted slot is BADARGS."""
        for start, end in [(END, START), (START, START), (START, START + 0.5)]:
            error = self.assertRaises(GeniError, build_request, start, end)
            self.assertEqual(error.code, GeniCode.BADARGS)

    def test_bad_controller(self) -> None:
        """A controller that is not host:port is BADARGS."""
        error = self.assertRaises(GeniError, build_request, START, END, "no-port")
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_bad_vlan(self) -> None:
        """A VLAN out of range is BADARGS."""
        error = self.assertRaises(GeniError, build_request, START, END, None, {"4095": "1"})
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_bad_aggregate(self) -> None:
        """A malformed aggregate URN is BADARGS."""
        error = self.assertRaises(GeniError, build_request, START, END, None, None, "urn:nope")
        self.assertEqual(error.code, GeniCode.BADARGS)


FEDERATED = (AM, OTHER_AM, THIRD_AM)
VLANS = {"10": "0xffff", "30": "20"}


class SeveralIslandsTests(SynchronousTestCase):
    """L{build_request} with C{am_urns} books the same slot on several islands, one part each."""

    def build(self, am_urns: Any = FEDERATED) -> str:
        """A request for C{am_urns} with a controller and two VLANs."""
        return build_request(START, END, "192.0.2.1:6633", VLANS, am_urns=am_urns)

    def test_one_node_and_elements_per_island(self) -> None:
        """Each aggregate gets its own node (unique client_id) and its own scoped island elements."""
        root = xml(self.build())
        nodes = root.findall(f"{{{RSPEC_NS}}}node")
        self.assertEqual([n.get("component_manager_id") for n in nodes], list(FEDERATED))
        self.assertEqual(
            [n.get("client_id") for n in nodes], ["island-island.example", "island-other.example", "island-third.example"]
        )
        for name, count in (("slot", 1), ("controller", 1), ("vlan", 2)):
            scopes = [e.get("component_manager_id") for e in root.iter(f"{{{ISLAND_NS}}}{name}")]
            self.assertEqual(sorted(scopes), sorted(list(FEDERATED) * count), name)

    def test_round_trip_each_aggregate(self) -> None:
        """parse_request gives every aggregate the same slot, controller and VLANs, and only its node."""
        text = self.build()
        client_ids = {}
        for urn in FEDERATED:
            request = parse_request(text, urn)
            self.assertEqual(request.slot, (START, END))
            self.assertEqual(request.controller, "192.0.2.1:6633")
            self.assertEqual(request.vlan_map, VLANS)
            self.assertEqual(len(request.node_client_ids), 1)
            self.assertEqual(len(request.foreign_node_client_ids), 2)
            self.assertEqual(request.component_manager_ids, FEDERATED)
            self.assertEqual(request.foreign_component_manager_ids, tuple(u for u in FEDERATED if u != urn))
            client_ids[urn] = request.node_client_ids[0]
        self.assertEqual(len(set(client_ids.values())), len(FEDERATED))

    def test_split_gives_each_its_part(self) -> None:
        """split_request sends each aggregate exactly its node and its island elements."""
        parts = split_request(self.build(), list(FEDERATED))
        self.assertEqual(list(parts), list(FEDERATED))
        own = {urn: parse_request(self.build(), urn).node_client_ids for urn in FEDERATED}
        for urn, part in parts.items():
            root = xml(part)
            scopes = {e.get("component_manager_id") for e in root}
            self.assertEqual(scopes, {urn})
            request = parse_request(part, urn)
            self.assertEqual(request.slot, (START, END))
            self.assertEqual(request.controller, "192.0.2.1:6633")
            self.assertEqual(request.vlan_map, VLANS)
            self.assertEqual(request.node_client_ids, own[urn])
            self.assertEqual(request.foreign_node_client_ids, ())
            self.assertEqual(request.component_manager_ids, (urn,))

    def test_single_aggregate_unchanged(self) -> None:
        """One URN in C{am_urns} writes exactly what C{am_urn} writes."""
        self.assertEqual(self.build([AM]), build_request(START, END, "192.0.2.1:6633", VLANS, AM))
        self.assertEqual(build_request(START, END, am_urns=[]), build_request(START, END))

    def test_client_ids_unique(self) -> None:
        """Aggregates whose authorities end alike still get distinct client_ids."""
        urns = [
            "urn:publicid:IDN+geniam:demo:am1+authority+am",
            "urn:publicid:IDN+other:am1+authority+am",
            "urn:publicid:IDN+geniam:am1-2+authority+am",
        ]
        self.assertEqual(island_client_ids(urns), ["island-am1", "island-am1-2", "island-am1-2-2"])
        text = self.build(urns)
        self.assertEqual([parse_request(text, urn).node_client_ids for urn in urns], [(c,) for c in island_client_ids(urns)])

    def test_refused(self) -> None:
        """An aggregate named twice, a bad URN, a bare string, or both parameters are BADARGS."""
        twice = [AM, AM.replace("island.example", "ISLAND.example")]
        for kwargs in (
            {"am_urns": twice},
            {"am_urns": [AM, "urn:nope"]},
            {"am_urns": AM},
            {"am_urn": AM, "am_urns": [OTHER_AM]},
        ):
            error = self.assertRaises(GeniError, build_request, START, END, **kwargs)
            self.assertEqual(error.code, GeniCode.BADARGS, kwargs)


class ParseRequestTests(SynchronousTestCase):
    """L{parse_request} reads strictly."""

    def assertBad(self, body: str, *fragments: str, rspec_type: str = "request") -> GeniError:
        """Assert the request made of C{body} is BADARGS with C{fragments} in the message."""
        error = self.assertRaises(GeniError, parse_request, request_document(body, rspec_type), AM)
        self.assertEqual(error.code, GeniCode.BADARGS, error.output)
        for fragment in fragments:
            self.assertIn(fragment, error.output)
        return error

    def test_no_slot(self) -> None:
        """A request without a slot parses with no slot."""
        request = parse_request(request_document("<node client_id='n'/>"), AM)
        self.assertIsNone(request.slot)
        self.assertIsNone(request.start)

    def test_type_must_be_request(self) -> None:
        """An advertisement or manifest is not a request."""
        self.assertBad(SLOT, "request", rspec_type="manifest")
        self.assertBad(SLOT, rspec_type="advertisement")

    def test_wrong_namespace(self) -> None:
        """A request outside the GENI v3 namespace is BADARGS."""
        text = f'<rspec xmlns="http://example.com/other" type="request">{SLOT}</rspec>'
        error = self.assertRaises(GeniError, parse_request, text, AM)
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_island_namespace_version(self) -> None:
        """Slot elements in another namespace are foreign extensions, not a slot."""
        body = f'<x:slot xmlns:x="urn:geniam:rspec:ext:island:2" start="{format_time(START)}" end="{format_time(END)}"/>'
        self.assertIsNone(parse_request(request_document(body), AM).slot)

    def test_bad_times(self) -> None:
        """Malformed, missing or inverted times are BADARGS."""
        self.assertBad('<island:slot start="tomorrow" end="2027-01-01T00:00:00Z"/>', "island:slot", "tomorrow")
        self.assertBad('<island:slot start="2027-02-30T00:00:00Z" end="2027-03-01T00:00:00Z"/>', "island:slot")
        self.assertBad('<island:slot start="2027-01-01T00:00:00Z"/>', "end")
        self.assertBad('<island:slot start="2027-01-01T02:00:00Z" end="2027-01-01T01:00:00Z"/>', "not before")

    def test_time_zones(self) -> None:
        """Slot times with offsets are converted to UTC."""
        body = '<island:slot start="2027-01-15T09:00:00+01:00" end="2027-01-15T10:00:00+01:00"/>'
        self.assertEqual(parse_request(request_document(body), AM).slot, (1_800_000_000.0, 1_800_003_600.0))

    def test_bad_controller(self) -> None:
        """A controller without a port, with a bad port or host is BADARGS."""
        for address in ("192.0.2.1", "192.0.2.1:0", "192.0.2.1:70000", "bad host:6633", ""):
            self.assertBad(SLOT + f'<island:controller address="{address}"/>', "controller")

    def test_vlan_out_of_range(self) -> None:
        """VLAN ids outside 1-4094 (and 0xffff on the testbed side) are BADARGS."""
        for testbed, island in [("0", "10"), ("4095", "10"), ("10", "4095"), ("0xffff", "10"), ("ten", "10")]:
            self.assertBad(SLOT + f'<island:vlan testbed="{testbed}" island="{island}"/>', "VLAN")

    def test_vlan_conflicts(self) -> None:
        """A testbed VLAN mapped twice, two untagged, or two onto one island VLAN are BADARGS."""
        self.assertBad('<island:vlan testbed="10" island="20"/><island:vlan testbed="10" island="30"/>', "twice")
        self.assertBad('<island:vlan testbed="10" island="20"/><island:vlan testbed="010" island="30"/>', "twice")
        self.assertBad('<island:vlan testbed="10" island="0xffff"/><island:vlan testbed="11" island="0xffff"/>')
        self.assertBad('<island:vlan testbed="10" island="20"/><island:vlan testbed="11" island="20"/>')

    def test_two_slots(self) -> None:
        """Two slots for this aggregate are BADARGS; one per aggregate is fine."""
        self.assertBad(SLOT + SLOT, "more than one island:slot")
        scoped = SLOT.replace("/>", f' component_manager_id="{OTHER_AM}"/>')
        self.assertEqual(parse_request(request_document(SLOT + scoped), AM).slot, (START, END))

    def test_two_controllers(self) -> None:
        """Two controllers for this aggregate are BADARGS."""
        controller = '<island:controller address="192.0.2.1:6633"/>'
        self.assertBad(controller + controller, "more than one island:controller")

    def test_unknown_island_element(self) -> None:
        """A misspelt island element is refused rather than silently ignored."""
        self.assertBad('<island:slots start="x" end="y"/>', "island:slots")
        self.assertBad('<island:schedule/>', "island:schedule")

    def test_unknown_island_attribute(self) -> None:
        """A misspelt attribute on an island element is refused."""
        self.assertBad('<island:controller adress="192.0.2.1:6633"/>', "adress")

    def test_manifest_attributes_ignored(self) -> None:
        """A manifest's annotations on island elements are accepted in a request."""
        body = SLOT.replace("/>", ' sliver_id="urn:publicid:IDN+island.example+sliver+b1" allocation_status="x"/>')
        self.assertEqual(parse_request(request_document(body), AM).slot, (START, END))

    def test_nested_island_element(self) -> None:
        """Island elements belong directly under <rspec>."""
        self.assertBad(f"<node client_id='n'>{SLOT}</node>", "direct child")

    def test_island_element_with_children(self) -> None:
        """Island elements are empty."""
        self.assertBad(f'<island:slot start="{format_time(START)}" end="{format_time(END)}"><x/></island:slot>', "empty")

    def test_client_ids(self) -> None:
        """Top-level nodes need a client_id, and client_ids are unique."""
        self.assertBad("<node/>", "client_id")
        self.assertBad("<node client_id='a'/><node client_id='a'/>", "twice")
        self.assertBad("<node client_id='a'><interface client_id='a'/></node>", "twice")

    def test_bad_urns(self) -> None:
        """Malformed component manager or component URNs are BADARGS."""
        self.assertBad("<node client_id='a' component_manager_id='am.example'/>", "component_manager_id")
        self.assertBad("<node client_id='a' component_id='urn:publicid:IDN+island.example+link+x'/>", "node URN")
        self.assertBad("<link client_id='l'><component_manager/></link>", "component_manager")

    def test_node_bound_elsewhere(self) -> None:
        """A node naming this aggregate but bound to another authority's component is BADARGS."""
        body = (
            f"<node client_id='a' component_manager_id='{AM}' "
            f"component_id='urn:publicid:IDN+other.example+node+{DPID1}'/>"
        )
        self.assertBad(body, "not a component of")

    def test_ownership(self) -> None:
        """Elements are sorted between this aggregate and others, and both are reported."""
        body = f"""
            <node client_id='mine' component_manager_id='{AM}'>
              <interface client_id='mine:1'/>
            </node>
            <node client_id='bound' component_id='urn:publicid:IDN+island.example+node+{DPID1}'/>
            <node client_id='unbound'/>
            <node client_id='theirs' component_manager_id='{OTHER_AM}'>
              <interface client_id='theirs:1'/>
            </node>
            <node client_id='theirs-bound' component_id='urn:publicid:IDN+third.example+node+pc1'/>
            <link client_id='span'>
              <interface_ref client_id='mine:1'/><interface_ref client_id='theirs:1'/>
            </link>
            <link client_id='far'><component_manager name='{OTHER_AM}'/></link>
            <link client_id='named' component_id='urn:publicid:IDN+island.example+link+x'>
              <component_manager name='{AM}'/>
            </link>
            <link client_id='loose'/>
            <island:slot start="{format_time(START)}" end="{format_time(END)}" component_manager_id="{THIRD_AM}"/>
            <stitching xmlns="http://hpn.east.isi.edu/rspec/ext/stitch/0.1/"/>
        """
        request = parse_request(request_document(body), AM)
        self.assertEqual(request.node_client_ids, ("mine", "bound", "unbound"))
        self.assertEqual(
            request.node_component_ids, (f"urn:publicid:IDN+island.example+node+{DPID1}",)
        )
        self.assertEqual(request.foreign_node_client_ids, ("theirs", "theirs-bound"))
        self.assertEqual(request.link_client_ids, ("span", "named", "loose"))
        self.assertEqual(request.link_component_ids, ("urn:publicid:IDN+island.example+link+x",))
        self.assertEqual(request.foreign_link_client_ids, ("far",))
        self.assertEqual(request.component_manager_ids, (AM, OTHER_AM, THIRD_AM))
        self.assertEqual(request.foreign_component_manager_ids, (OTHER_AM, THIRD_AM))
        self.assertIsNone(request.slot)

    def test_component_manager_case(self) -> None:
        """Aggregate URNs compare case-insensitively in the authority."""
        body = f"<node client_id='a' component_manager_id='{AM.replace('island.example', 'Island.Example')}'/>"
        request = parse_request(request_document(body), AM)
        self.assertEqual(request.node_client_ids, ("a",))
        self.assertEqual(request.foreign_component_manager_ids, ())

    def test_hostile_request(self) -> None:
        """parse_request is protected by the hardened parser."""
        text = '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><rspec type="request">&x;</rspec>'
        error = self.assertRaises(GeniError, parse_request, text, AM)
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_bytes_input(self) -> None:
        """A request given as bytes with a declaration parses."""
        text = b'<?xml version="1.0" encoding="UTF-8"?>' + build_request(START, END).encode()
        self.assertEqual(parse_request(text, AM).slot, (START, END))


class ScheduleTests(SynchronousTestCase):
    """L{read_schedule} reads the advertisement's schedule."""

    def test_bad_child(self) -> None:
        """A schedule holding anything but booked slots is BADARGS."""
        root = xml(f'<s xmlns="{ISLAND_NS}"><booked start="x" end="y"/></s>')
        self.assertRaises(GeniError, read_schedule, root)
        root = xml(f'<s xmlns="{ISLAND_NS}"><other/></s>')
        self.assertRaises(GeniError, read_schedule, root)


_controllers = st.one_of(
    st.tuples(st.ip_addresses(v=4), st.integers(1, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.tuples(st.ip_addresses(v=6), st.integers(1, 65535)).map(lambda t: f"[{t[0]}]:{t[1]}"),
    st.tuples(st.from_regex(r"\A[a-z][a-z0-9]{0,10}(\.[a-z][a-z0-9]{0,10}){0,3}\Z"), st.integers(1, 65535)).map(
        lambda t: f"{t[0]}:{t[1]}"
    ),
)


@st.composite
def _vlan_maps(draw: Any) -> dict[str, str]:
    testbed = draw(st.lists(st.integers(1, 4094), unique=True, max_size=12))
    island = draw(st.lists(st.integers(1, 4094), unique=True, min_size=len(testbed), max_size=len(testbed)))
    mapping = {str(t): str(i) for t, i in zip(testbed, island)}
    if testbed and draw(st.booleans()):
        mapping[str(testbed[0])] = "0xffff"
    return mapping


class RoundTripPropertyTests(SynchronousTestCase):
    """Property: any valid request survives build_request then parse_request."""

    @given(
        start=st.integers(0, 4_000_000_000),
        length=st.integers(1, 400 * 86400),
        controller=st.one_of(st.none(), _controllers),
        vlan_map=_vlan_maps(),
        scoped=st.booleans(),
    )
    def test_round_trip(
        self, start: int, length: int, controller: str | None, vlan_map: dict[str, str], scoped: bool
    ) -> None:
        """The slot, controller and VLAN map come back unchanged."""
        text = build_request(start, start + length, controller, vlan_map, AM if scoped else None)
        request = parse_request(text, AM)
        self.assertEqual(request.slot, (float(start), float(start + length)))
        self.assertEqual(request.controller, controller)
        self.assertEqual(request.vlan_map, vlan_map)
        self.assertEqual(request.component_manager_ids, (AM,) if scoped else ())

    @given(st.integers(0, 4_000_000_000), st.integers(1, 86400))
    def test_other_aggregate_ignores_scoped(self, start: int, length: int) -> None:
        """A request scoped to one aggregate asks nothing of another."""
        request = parse_request(build_request(start, start + length, am_urn=OTHER_AM), AM)
        self.assertIsNone(request.slot)
        self.assertEqual(request.node_client_ids, ())
        self.assertEqual(request.foreign_node_client_ids, ("island",))
