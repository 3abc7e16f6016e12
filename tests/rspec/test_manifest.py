"""
Tests for L{geniam.rspec.manifest}: the manifest is the request,
annotated with the bookings.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.rspec.manifest import ManifestBooking, ManifestUser, as_booking, booking_slivers, build_manifest
from geniam.rspec.namespaces import ISLAND_NS, RSPEC_NS, USER_NS
from geniam.rspec.parser import parse_rspec
from geniam.rspec.request import build_request
from geniam.timeutil import format_time
from tests.rspec.test_fixtures import (
    ALICE,
    ALICE_KEY,
    AM,
    DPID1,
    DPID2,
    DPID3,
    END,
    LINK12,
    OTHER_AM,
    SLIVER,
    SLIVER2,
    START,
    island,
    request_document,
    xml,
)

G = f"{{{RSPEC_NS}}}"
I = f"{{{ISLAND_NS}}}"
U = f"{{{USER_NS}}}"


def booking(**changes: object) -> dict[str, object]:
    """A provisioned booking as a plain dict, with C{changes} applied."""
    value: dict[str, object] = {
        "sliver_urn": SLIVER,
        "slot": (START, END),
        "controller": "192.0.2.1:6633",
        "vlan_map": {"10": "0xffff", "30": "20"},
        "users": [{"urn": ALICE, "keys": [ALICE_KEY]}],
        "allocation_state": "geni_provisioned",
        "operational_state": "geni_notready",
        "expires": END,
    }
    value.update(changes)
    return value


def nodes_by_client_id(root: object) -> dict[str, object]:
    """Map each top-level node's client_id to the node."""
    return {n.get("client_id"): n for n in root.findall(f"{G}node")}  # type: ignore[attr-defined]


class ManifestTests(SynchronousTestCase):
    """The manifest of one or more bookings."""

    def test_empty(self) -> None:
        """A slice with nothing here gets an empty manifest, even with a request."""
        text = build_manifest(island(), [], START, request=build_request(START, END))
        root = parse_rspec(text, "manifest")
        self.assertEqual(len(root), 0)

    def test_root(self) -> None:
        """The root is a manifest with generated time and the earliest expiry."""
        text = build_manifest(island(), [booking(), booking(sliver_urn=SLIVER2, expires=END - 60)], START)
        root = parse_rspec(text, "manifest")
        self.assertEqual(root.get("generated"), format_time(START))
        self.assertEqual(root.get("expires"), format_time(END - 60))

    def test_without_request(self) -> None:
        """Without a request the manifest has one island node; the switches and links are in the island extension."""
        root = xml(build_manifest(island(gateway_host="gw.island.example"), [booking()], START))
        nodes = nodes_by_client_id(root)
        self.assertEqual(set(nodes), {"island"})
        self.assertEqual(nodes["island"].get("sliver_id"), SLIVER)  # type: ignore[attr-defined]
        self.assertEqual(nodes["island"].get("component_manager_id"), AM)  # type: ignore[attr-defined]
        self.assertEqual(root.findall(f"{G}link"), [])
        switches = root.findall(f"{I}switch")
        self.assertEqual(
            [(e.get("component_id"), e.get("component_name")) for e in switches],
            [(island().node_urn(dpid), dpid) for dpid in (DPID1, DPID2, DPID3)],
        )
        links = root.findall(f"{I}link")
        self.assertEqual(
            [e.get("component_id") for e in links], [island().link_urn(link) for link in island().links]
        )
        for element in switches + links:
            self.assertEqual((element.get("sliver_id"), element.get("component_manager_id")), (SLIVER, AM))
        slot = root.find(f"{I}slot")
        assert slot is not None
        self.assertEqual(slot.get("sliver_id"), SLIVER)
        self.assertEqual(slot.get("component_manager_id"), AM)
        self.assertEqual(slot.get("allocation_status"), "geni_provisioned")
        self.assertEqual(slot.get("operational_status"), "geni_notready")
        self.assertEqual(slot.get("expires"), format_time(END))

    def test_login_services(self) -> None:
        """The island node carries a login to the gateway and the user's keys."""
        root = xml(build_manifest(island(gateway_host="gw.island.example", gateway_port=2222), [booking()], START))
        node = nodes_by_client_id(root)["island"]
        login = node.find(f"{G}services/{G}login")  # type: ignore[attr-defined]
        self.assertEqual(
            dict(login.attrib),
            {"authentication": "ssh-keys", "hostname": "gw.island.example", "port": "2222", "username": "alice"},
        )
        user = node.find(f"{G}services/{U}services_user")  # type: ignore[attr-defined]
        self.assertEqual((user.get("login"), user.get("user_urn")), ("alice", ALICE))
        self.assertEqual([k.text for k in user.findall(f"{U}public_key")], [ALICE_KEY])
        self.assertEqual(node.find(f"{G}host").get("name"), "gw.island.example")  # type: ignore[attr-defined]

    def test_keys_without_gateway_host(self) -> None:
        """Without a known gateway host the keys are listed but no login is invented."""
        root = xml(build_manifest(island(), [booking()], START))
        self.assertEqual(list(root.iter(f"{G}login")), [])
        self.assertEqual(len(list(root.iter(f"{U}public_key"))), 1)

    def test_booking_slivers_round_trip(self) -> None:
        """The slot, controller, VLAN map and states read back out of the manifest."""
        text = build_manifest(island(), [booking(), booking(sliver_urn=SLIVER2, controller=None, vlan_map={})], START)
        slivers = booking_slivers(text)
        self.assertEqual(
            slivers[0],
            {
                "sliver_urn": SLIVER,
                "start": START,
                "end": END,
                "controller": "192.0.2.1:6633",
                "vlan_map": {"10": "0xffff", "30": "20"},
                "allocation_status": "geni_provisioned",
                "operational_status": "geni_notready",
                "component_manager_id": AM,
            },
        )
        self.assertEqual((slivers[1]["sliver_urn"], slivers[1]["controller"], slivers[1]["vlan_map"]), (SLIVER2, None, {}))

    def test_several_bookings_have_unique_client_ids(self) -> None:
        """Each booking gets its own island node and extension elements; client_ids stay unique."""
        root = xml(build_manifest(island(), [booking(), booking(sliver_urn=SLIVER2)], START))
        client_ids = [e.get("client_id") for e in root.iter(f"{G}node", f"{G}link", f"{G}interface")]
        self.assertEqual(client_ids, ["island", "island@b2"])
        self.assertEqual([n.get("sliver_id") for n in root.findall(f"{G}node")], [SLIVER, SLIVER2])
        self.assertEqual(
            [e.get("sliver_id") for e in root.findall(f"{I}switch")], [SLIVER] * 3 + [SLIVER2] * 3
        )

    def test_annotated_request(self) -> None:
        """The request's client_ids, foreign elements and unknown extensions survive; ours are annotated."""
        request = request_document(
            f"""
            <node client_id="my-island" component_manager_id="{AM}">
              <sliver_type name="island"/>
              <services><execute shell="sh" command="true"/></services>
            </node>
            <node client_id="sw1" component_id="urn:publicid:IDN+island.example+node+{DPID1}">
              <interface client_id="sw1:1" component_id="urn:publicid:IDN+island.example+interface+{DPID1}:1"/>
            </node>
            <node client_id="pc" component_manager_id="{OTHER_AM}"><sliver_type name="raw-pc"/></node>
            <island:slot start="{format_time(START)}" end="{format_time(END)}"/>
            <island:slot start="{format_time(START)}" end="{format_time(END)}" component_manager_id="{OTHER_AM}"/>
            <ext:thing xmlns:ext="http://example.com/ext" keep="me"/>
            <statistics call="Allocate"/>
            """
        )
        root = xml(build_manifest(island(gateway_host="gw"), [booking()], START, request=request))
        nodes = nodes_by_client_id(root)
        self.assertEqual(list(nodes), ["my-island", "sw1", "pc"])
        mine = nodes["my-island"]
        self.assertEqual(mine.get("sliver_id"), SLIVER)  # type: ignore[attr-defined]
        self.assertIsNotNone(mine.find(f"{G}services/{G}execute"))  # type: ignore[attr-defined]
        self.assertIsNotNone(mine.find(f"{G}services/{G}login"))  # type: ignore[attr-defined]
        self.assertEqual(nodes["sw1"].get("sliver_id"), SLIVER)  # type: ignore[attr-defined]
        self.assertEqual(nodes["sw1"].get("component_id"), f"urn:publicid:IDN+island.example+node+{DPID1}")  # type: ignore[attr-defined]
        self.assertIsNone(nodes["sw1"].find(f"{G}services"))  # type: ignore[attr-defined]
        foreign = nodes["pc"]
        self.assertIsNone(foreign.get("sliver_id"))  # type: ignore[attr-defined]
        self.assertEqual(foreign.get("component_manager_id"), OTHER_AM)  # type: ignore[attr-defined]
        slots = root.findall(f"{I}slot")
        self.assertEqual(
            [(s.get("component_manager_id"), s.get("sliver_id")) for s in slots], [(OTHER_AM, None), (AM, SLIVER)]
        )
        self.assertEqual(root.find("{http://example.com/ext}thing").get("keep"), "me")  # type: ignore[union-attr]
        self.assertEqual(list(root.iter(f"{G}statistics")), [])
        self.assertEqual(root.findall(f"{G}link"), [])
        self.assertEqual(len(root.findall(f"{I}switch")), 3)

    def test_request_links_annotated(self) -> None:
        """A request link of this aggregate gets the sliver and component manager."""
        request = request_document(
            f'<link client_id="l1" component_id="urn:publicid:IDN+island.example+link+{LINK12}"/>'
        )
        root = xml(build_manifest(island(), [booking()], START, request=request))
        links = {link.get("client_id"): link for link in root.findall(f"{G}link")}
        self.assertEqual(list(links), ["l1"])
        self.assertEqual(links["l1"].get("sliver_id"), SLIVER)
        self.assertEqual(links["l1"].find(f"{G}component_manager").get("name"), AM)  # type: ignore[union-attr]

    def test_second_booking_client_id_collision(self) -> None:
        """A later booking's island node never takes a client_id the request used."""
        request = request_document(f'<node client_id="island@b2" component_manager_id="{OTHER_AM}"/>')
        root = xml(build_manifest(island(), [booking(), booking(sliver_urn=SLIVER2)], START, request=request))
        client_ids = [n.get("client_id") for n in root.findall(f"{G}node")]
        self.assertEqual(client_ids, ["island@b2", "island@b2-2"])

    def test_bad_request(self) -> None:
        """A hostile request is refused by the parser."""
        error = self.assertRaises(
            GeniError, build_manifest, island(), [booking()], START, '<!DOCTYPE x><rspec type="request"/>'
        )
        self.assertEqual(error.code, GeniCode.BADARGS)

    def test_geni_lib_reads_it(self) -> None:
        """geni-lib reads the nodes, logins and keys."""
        try:
            from geni.rspec.pgmanifest import Manifest
        except ImportError as e:
            raise SkipTest(f"geni-lib is not usable here: {e}")
        manifest = Manifest(xml=build_manifest(island(gateway_host="gw"), [booking()], START))
        island_node = [n for n in manifest.nodes if n.client_id == "island"][0]
        self.assertEqual(island_node.sliver_id, SLIVER)
        self.assertEqual(island_node.logins[0].hostname, "gw")
        self.assertEqual(island_node.users[0].public_key, ALICE_KEY)


class BookingInputTests(SynchronousTestCase):
    """Bookings come as dataclasses, dicts or similar objects, and are validated."""

    def test_dataclass(self) -> None:
        """A ManifestBooking passes through unchanged in substance."""
        value = ManifestBooking(SLIVER, START, END, users=(ManifestUser(ALICE, (ALICE_KEY,), login="al"),))
        normalised = as_booking(value)
        self.assertEqual(normalised.users[0].account, "al")
        self.assertEqual((normalised.allocation_status, normalised.operational_status), ("geni_allocated", "geni_pending_allocation"))

    def test_other_object(self) -> None:
        """Any object with the same field names works, with RFC 3339 times."""

        @dataclass
        class Booking:
            """A booking record from elsewhere in the code base."""

            sliver_urn: str
            start: str
            end: str

        normalised = as_booking(Booking(SLIVER, format_time(START), format_time(END)))
        self.assertEqual((normalised.start, normalised.end), (START, END))

    def test_invalid(self) -> None:
        """Bad URNs, slots, controllers, VLANs, keys and states are BADARGS."""
        for changes in (
            {"sliver_urn": "urn:publicid:IDN+island.example+slice+x"},
            {"slot": (END, START)},
            {"slot": ("soon", END)},
            {"controller": "nowhere"},
            {"vlan_map": {"10": "5000"}},
            {"users": [{"urn": ALICE, "keys": ["not a key"]}]},
            {"users": [{"urn": "urn:publicid:IDN+x+slice+y", "keys": []}]},
            {"allocation_state": "bad state"},
        ):
            error = self.assertRaises(GeniError, as_booking, booking(**changes))
            self.assertEqual(error.code, GeniCode.BADARGS, changes)
