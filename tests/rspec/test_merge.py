"""
Tests for L{geniam.rspec.merge}: the Slice Manager's merging of
advertisements and manifests, statistics, and request splitting.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.rspec.advertisement import build_advertisement
from geniam.rspec.compression import compress_rspec
from geniam.rspec.manifest import build_manifest
from geniam.rspec.merge import (
    AggregateOutcome,
    merge_advertisements,
    merge_manifests,
    read_statistics,
    strip_statistics,
)
from geniam.rspec.namespaces import ISLAND_NS, RSPEC_NS
from geniam.rspec.parser import parse_rspec
from geniam.rspec.request import build_request
from geniam.rspec.resources import IslandResources
from geniam.rspec.split import split_request
from tests.rspec.test_fixtures import (
    AM,
    DPID1,
    DPID2,
    END,
    OTHER_AM,
    SLIVER,
    START,
    THIRD_AM,
    island,
    request_document,
    xml,
)

G = f"{{{RSPEC_NS}}}"
OTHER_SLIVER = "urn:publicid:IDN+other.example+sliver+x9"


def other_island() -> IslandResources:
    """A second island at another aggregate."""
    return IslandResources.create(OTHER_AM, [DPID1, DPID2], [])


def with_statistics(text: str) -> str:
    """C{text} with a stale <statistics> block, as a nested slice manager would leave."""
    return text.replace(
        "</rspec>", '<statistics call="ListResources"><aggregate name="stale" elapsed="1" status="success"/></statistics></rspec>'
    )


class MergeAdvertisementTests(SynchronousTestCase):
    """merge_advertisements."""

    def test_union_and_statistics(self) -> None:
        """Nodes of every aggregate appear once; statistics list every aggregate."""
        outcomes = [
            AggregateOutcome("https://a.example/am/3.0", 0.25, rspec=with_statistics(build_advertisement(island(), [], START))),
            AggregateOutcome(OTHER_AM, 1.5, rspec=compress_rspec(build_advertisement(other_island(), [], START))),
            AggregateOutcome("https://slow.example", 30.0, "timeout", code=8, exception="no answer within 30 s"),
            AggregateOutcome("https://broken.example", 0.1, "error", code=2, exception="Traceback\n  something\tbad"),
        ]
        text = merge_advertisements(outcomes, generated=START)
        root = parse_rspec(text, "advertisement")
        self.assertEqual(root.get("generated_by"), "geniam")
        components = [n.get("component_id") for n in root.findall(f"{G}node")]
        self.assertEqual(len(components), 5)
        self.assertEqual(len(set(components)), 5)
        self.assertEqual(len(root.findall(f"{{{ISLAND_NS}}}schedule")), 2)
        statistics = root.findall(f"{G}statistics")
        self.assertEqual(len(statistics), 1)
        self.assertEqual(statistics[0].get("call"), "ListResources")
        self.assertEqual(
            read_statistics(text),
            [
                {"call": "ListResources", "name": "https://a.example/am/3.0", "elapsed": "0.250", "status": "success"},
                {"call": "ListResources", "name": OTHER_AM, "elapsed": "1.500", "status": "success"},
                {
                    "call": "ListResources",
                    "name": "https://slow.example",
                    "elapsed": "30.000",
                    "status": "timeout",
                    "code": "8",
                    "exception": "no answer within 30 s",
                },
                {
                    "call": "ListResources",
                    "name": "https://broken.example",
                    "elapsed": "0.100",
                    "status": "error",
                    "code": "2",
                    "exception": "Traceback something bad",
                },
            ],
        )

    def test_duplicates_kept_once(self) -> None:
        """The same aggregate reached twice contributes its nodes once."""
        ad = build_advertisement(island(), [], START)
        root = xml(merge_advertisements([AggregateOutcome("a", 1, rspec=ad), AggregateOutcome("b", 1, rspec=ad)]))
        self.assertEqual(len(root.findall(f"{G}node")), 3)
        self.assertEqual(len(root.findall(f"{{{ISLAND_NS}}}schedule")), 1)

    def test_bad_document_reported(self) -> None:
        """An unparseable or wrong-type answer is an error in the statistics and adds nothing."""
        outcomes = [
            AggregateOutcome("evil", 0.5, rspec='<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'),
            AggregateOutcome("manifest", 0.5, rspec=build_manifest(island(), [], START)),
            AggregateOutcome("good", 0.5, rspec=build_advertisement(island(), [], START)),
        ]
        text = merge_advertisements(outcomes)
        stats = {s["name"]: s for s in read_statistics(text)}
        self.assertEqual((stats["evil"]["status"], stats["evil"]["code"]), ("error", "1"))
        self.assertIn("DOCTYPE", stats["evil"]["exception"])
        self.assertEqual(stats["manifest"]["status"], "error")
        self.assertEqual(stats["good"]["status"], "success")
        self.assertEqual(len(xml(text).findall(f"{G}node")), 3)

    def test_long_exception_shortened(self) -> None:
        """Exception texts are cut to a short reason."""
        text = merge_advertisements([AggregateOutcome("a", 1, "error", exception="x" * 5000)])
        self.assertEqual(len(read_statistics(text)[0]["exception"]), 200)

    def test_namespaces_declared_once(self) -> None:
        """Extension namespaces are declared on the merged root, not on every element."""
        text = merge_advertisements([AggregateOutcome("a", 1, rspec=build_advertisement(island(), [], START))])
        self.assertEqual(text.count(f'xmlns:island="{ISLAND_NS}"'), 1)

    def test_nothing(self) -> None:
        """With no aggregate the result is an empty advertisement with empty statistics."""
        root = parse_rspec(merge_advertisements([]), "advertisement")
        self.assertEqual([child.tag for child in root], [f"{G}statistics"])

    def test_status_validated(self) -> None:
        """An outcome's status is one of success, error, timeout."""
        self.assertRaises(ValueError, AggregateOutcome, "a", 1, "exploded")

    @given(st.lists(st.sampled_from([DPID1, DPID2, "00:00:00:00:00:00:00:03", "00:00:00:00:00:00:00:04"]), max_size=4))
    def test_merge_is_union(self, switches: list[str]) -> None:
        """Property: the merged nodes are the union of both aggregates' nodes."""
        first = IslandResources.create(AM, switches)
        second = IslandResources.create(OTHER_AM, switches[::-1])
        text = merge_advertisements(
            [
                AggregateOutcome("a", 0, rspec=build_advertisement(first, [], START)),
                AggregateOutcome("b", 0, rspec=build_advertisement(second, [], START)),
            ]
        )
        merged = {n.get("component_id") for n in xml(text).findall(f"{G}node")}
        expected = {first.node_urn(d) for d in first.switches} | {second.node_urn(d) for d in second.switches}
        self.assertEqual(merged, expected)


def _xml_char(c: str) -> bool:
    """Whether XML 1.0 can hold C{c} (its Char production)."""
    code = ord(c)
    return c in "\t\n\r" or 0x20 <= code <= 0xD7FF or 0xE000 <= code <= 0xFFFD or code >= 0x10000


class MergeManifestTests(SynchronousTestCase):
    """merge_manifests."""

    def test_annotated_copy_wins(self) -> None:
        """An aggregate's annotated node replaces the unannotated copy another aggregate echoed."""
        request = request_document(
            f'<node client_id="pc" component_manager_id="{OTHER_AM}"/>'
            f'<node client_id="island" component_manager_id="{AM}"/>'
        )
        ours = build_manifest(island(), [{"sliver_urn": SLIVER, "slot": (START, END)}], START, request=request)
        theirs = request_document(
            f'<node client_id="pc" component_manager_id="{OTHER_AM}" sliver_id="{OTHER_SLIVER}"/>'
            f'<node client_id="island" component_manager_id="{AM}"/>',
            "manifest",
        )
        text = merge_manifests(
            [AggregateOutcome(AM, 1, rspec=ours), AggregateOutcome(OTHER_AM, 2, rspec=theirs)], call="Allocate"
        )
        root = parse_rspec(text, "manifest")
        nodes = {n.get("client_id"): n for n in root.findall(f"{G}node")}
        self.assertEqual(nodes["pc"].get("sliver_id"), OTHER_SLIVER)
        self.assertEqual(nodes["island"].get("sliver_id"), SLIVER)
        self.assertEqual(len(root.findall(f"{G}node")), len(nodes))
        self.assertEqual(read_statistics(text)[0]["call"], "Allocate")

    def test_error_outcome(self) -> None:
        """A failed aggregate adds only its statistics entry."""
        text = merge_manifests([AggregateOutcome(AM, 3, "error", code=14, exception="busy")])
        self.assertEqual(read_statistics(text)[0]["code"], "14")

    @given(
        st.lists(
            st.tuples(
                st.sampled_from([AM, OTHER_AM, "https://am.example:8001/am/3.0?x=1&y=2"]),
                st.floats(min_value=-1, max_value=1e4, allow_nan=False),
                st.sampled_from(["error", "timeout"]),
                st.one_of(st.none(), st.integers(min_value=0, max_value=25)),
                st.one_of(st.none(), st.text(max_size=240)),
            ),
            max_size=6,
        )
    )
    def test_statistics_read_back(self, failed: list[tuple[str, float, str, int | None, str | None]]) -> None:
        """Property: whatever the names and reasons (markup, quotes, spaces), the statistics read back as reported."""
        ours = build_manifest(island(), [{"sliver_urn": SLIVER, "slot": (START, END)}], START)
        outcomes = [AggregateOutcome(AM, 0.25, rspec=ours)]
        outcomes += [AggregateOutcome(name, elapsed, status, code=code, exception=why) for name, elapsed, status, code, why in failed]
        read = read_statistics(merge_manifests(outcomes, call="Allocate"))
        self.assertEqual([entry["name"] for entry in read], [o.name for o in outcomes])
        for entry, outcome in zip(read, outcomes):
            self.assertEqual(entry["elapsed"], f"{max(0.0, outcome.elapsed):.3f}")
            self.assertEqual(entry["status"], outcome.status)
            self.assertEqual(entry.get("code"), None if outcome.code is None else str(outcome.code))
            reason = "".join(c if _xml_char(c) else "\ufffd" for c in " ".join((outcome.exception or "").split()))
            self.assertEqual(entry.get("exception"), reason[:200] or None)


ISLAND_AMS = (AM, OTHER_AM, THIRD_AM)


def _identities(text: str) -> set[tuple[str, ...]]:
    """Every node, link and island element of a manifest, by tag and identifying attributes."""
    root = parse_rspec(text, "manifest")
    found = set()
    for element in root:
        if str(element.tag).endswith("statistics"):
            continue
        attributes = ("client_id", "component_manager_id", "component_id", "sliver_id", "testbed", "start")
        found.add((str(element.tag),) + tuple(element.get(a) or "" for a in attributes))
    return found


class ManifestRoundTripTests(SynchronousTestCase):
    """
    Islands with the same client IDs and switch IDs: request, split,
    manifests, merge gives back every element of every island.
    """

    def islands(self, count: int) -> list[IslandResources]:
        return [IslandResources.create(urn, [DPID1, DPID2], [f"{DPID1}:1-{DPID2}:3"]) for urn in ISLAND_AMS[:count]]

    def sliver(self, urn: str) -> str:
        return urn.replace("+authority+am", "+sliver+b1").replace("+authority+cm", "+sliver+b1")

    def merged_keeps_everything(self, manifests: dict[str, str]) -> None:
        text = merge_manifests([AggregateOutcome(urn, 1, rspec=m) for urn, m in manifests.items()], call="Allocate")
        merged = _identities(text)
        for urn, manifest in manifests.items():
            missing = _identities(manifest) - merged
            self.assertEqual(missing, set(), urn)
        self.assertEqual(len(merged), sum(len(_identities(m)) for m in manifests.values()))
        switches = parse_rspec(text, "manifest").findall(f"{{{ISLAND_NS}}}switch")
        self.assertEqual(len(switches), 2 * len(manifests))
        self.assertEqual(len({s.get("component_manager_id") for s in switches}), len(manifests))

    def round_trip(self, count: int) -> None:
        islands = self.islands(count)
        request = build_request(START, END, am_urns=[i.am_urn for i in islands])
        parts = split_request(request, [i.am_urn for i in islands])
        self.assertEqual(list(parts), [i.am_urn for i in islands])
        manifests = {
            i.am_urn: build_manifest(i, [{"sliver_urn": self.sliver(i.am_urn), "slot": (START, END)}], START, request=parts[i.am_urn])
            for i in islands
        }
        self.merged_keeps_everything(manifests)

    def described(self, count: int) -> None:
        manifests = {
            i.am_urn: build_manifest(i, [{"sliver_urn": self.sliver(i.am_urn), "slot": (START, END)}], START)
            for i in self.islands(count)
        }
        self.assertTrue(all('client_id="island"' in m for m in manifests.values()))
        self.merged_keeps_everything(manifests)

    def test_round_trip_two_islands(self) -> None:
        """Two islands with identical switch IDs: the merged Allocate manifest holds both islands' elements."""
        self.round_trip(2)

    def test_round_trip_three_islands(self) -> None:
        """Three islands with identical switch IDs: nothing of any island is lost."""
        self.round_trip(3)

    def test_describe_two_islands_same_client_ids(self) -> None:
        """Describe manifests both naming their node C{island}: both nodes and all switches are kept."""
        self.described(2)

    def test_describe_three_islands_same_client_ids(self) -> None:
        """The same with three islands."""
        self.described(3)


class StripStatisticsTests(SynchronousTestCase):
    """strip_statistics."""

    def test_strips_everywhere(self) -> None:
        """Statistics in the GENI namespace or none, at any depth, are removed."""
        root = xml(
            request_document('<statistics/><node client_id="a"><statistics xmlns=""/></node><x:statistics xmlns:x="urn:x"/>')
        )
        strip_statistics(root)
        self.assertEqual([e.tag for e in root.iter() if "statistics" in str(e.tag)], ["{urn:x}statistics"])
