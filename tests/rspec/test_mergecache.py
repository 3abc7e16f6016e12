"""
Tests for L{geniam.rspec.mergecache}: merges from each peer's kept,
checked answer give exactly what the tree merge gives.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from geniam.rspec.advertisement import build_advertisement
from geniam.rspec.compression import compress_rspec
from geniam.rspec.manifest import build_manifest
from geniam.rspec.merge import AggregateOutcome, merge_advertisements, merge_manifests, read_statistics
from geniam.rspec.mergecache import AnswerCache
from geniam.rspec.namespaces import RSPEC_NS
from geniam.rspec.request import build_request
from geniam.rspec.resources import IslandResources
from geniam.rspec.split import split_request
from tests.rspec.test_fixtures import AM, DPID1, DPID2, END, OTHER_AM, START, THIRD_AM

AMS = (AM, OTHER_AM, THIRD_AM)
PEERS = ("https://a.example/", "https://b.example/", "https://c.example/", "https://d.example/")
SWITCHES = ("00:00:00:00:00:00:00:01", "00:00:00:00:00:00:00:02", "00:00:00:00:00:00:00:03")
LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    f'<rspec xmlns="{RSPEC_NS}" type="advertisement">&lol2;</rspec>'
)


def advertisement(am: str, switches: tuple[str, ...]) -> str:
    """An island's advertisement."""
    return build_advertisement(IslandResources.create(am, list(switches), []), [], START)


def extension(prefix: str, namespace: str, value: str) -> str:
    """A document with an extension element, its prefix declared on the root."""
    return (
        f'<rspec xmlns="{RSPEC_NS}" xmlns:{prefix}="{namespace}" type="advertisement">'
        f'<{prefix}:thing {prefix}:v="{value}"><{prefix}:inner>text &amp; more</{prefix}:inner></{prefix}:thing>'
        f'<node component_id="urn:publicid:IDN+x.example+node+{value}"/></rspec>'
    )


ANSWERS = st.one_of(
    st.builds(advertisement, st.sampled_from(AMS), st.lists(st.sampled_from(SWITCHES), min_size=1, max_size=3, unique=True).map(tuple)),
    st.builds(extension, st.sampled_from(("x", "y", "ns0")), st.sampled_from(("urn:one", "urn:two")), st.sampled_from(("1", "2"))),
    st.just(LAUGHS),
    st.just("<rspec>not closed"),
    st.just(f'<rspec xmlns="{RSPEC_NS}" type="manifest"/>'),
)
"""Good, colliding, hostile and broken advertisements."""


@st.composite
def ad_rounds(draw: st.DrawFn) -> list[list[AggregateOutcome]]:
    """Successive ListResources rounds over the same peers, each peer's answer kept or changed."""
    peers = draw(st.lists(st.sampled_from(PEERS), min_size=1, max_size=4, unique=True))
    answers = {peer: draw(ANSWERS) for peer in peers}
    rounds = []
    for _ in range(draw(st.integers(1, 3))):
        outcomes = []
        for peer in peers:
            if draw(st.booleans()):
                answers[peer] = draw(ANSWERS)
            status = draw(st.sampled_from(("success", "success", "success", "timeout")))
            rspec = answers[peer]
            if status == "success" and draw(st.booleans()):
                rspec = compress_rspec(rspec)
            if status == "success":
                outcomes.append(AggregateOutcome(peer, 0.2, rspec=rspec))
            else:
                outcomes.append(AggregateOutcome(peer, 30.0, "timeout", code=8, exception="no answer & gone <late>"))
        rounds.append(outcomes)
    return rounds


def island_manifests(count: int, described: bool, serial: int) -> list[AggregateOutcome]:
    """Manifests of islands with the same client IDs and switch IDs (Allocate's, or Describe's)."""
    islands = [IslandResources.create(urn, [DPID1, DPID2], [f"{DPID1}:1-{DPID2}:3"]) for urn in AMS[:count]]
    parts = split_request(build_request(START, END, am_urns=[i.am_urn for i in islands]), [i.am_urn for i in islands])
    outcomes = []
    for i in islands:
        sliver = i.am_urn.replace("+authority+am", f"+sliver+b{serial}").replace("+authority+cm", f"+sliver+b{serial}")
        request = None if described else parts[i.am_urn]
        manifest = build_manifest(i, [{"sliver_urn": sliver, "slot": (START, END)}], START, request=request)
        outcomes.append(AggregateOutcome(i.am_urn, 0.5, rspec=manifest))
    return outcomes


class SameAsTreeMergeTests(SynchronousTestCase):
    """The cached merge against L{merge_advertisements} and L{merge_manifests}."""

    @settings(max_examples=150, deadline=None)
    @given(ad_rounds())
    def test_advertisement_rounds(self, rounds: list[list[AggregateOutcome]]) -> None:
        """Round after round, with answers kept, changed, hostile or missing: the same document."""
        cache = AnswerCache()
        for outcomes in rounds:
            self.assertEqual(
                cache.merge("advertisement", outcomes, "ListResources", START),
                merge_advertisements(outcomes, "ListResources", START),
            )

    @settings(max_examples=50, deadline=None)
    @given(st.lists(st.sampled_from(PEERS), min_size=1, max_size=4, unique=True), st.data())
    def test_manifests_taken_as_they_arrive(self, peers: list[str], data: st.DataObject) -> None:
        """Manifests taken one by one before the merge, some answered with statistics: the same document."""
        cache = AnswerCache()
        for serial in range(2):
            outcomes = []
            for index, peer in enumerate(peers):
                node = data.draw(st.sampled_from(("n0", "n1")))
                sliver = "" if data.draw(st.booleans()) else f' sliver_id="urn:publicid:IDN+x.example+sliver+{serial}{index}"'
                rspec = (
                    f'<rspec xmlns="{RSPEC_NS}" type="manifest" expires="2030-01-0{index + 1}T00:00:00Z">'
                    f'<node client_id="{node}" component_manager_id="{AM}"{sliver}/>'
                    '<statistics call="Allocate"><aggregate name="inner" elapsed="1" status="success"/></statistics></rspec>'
                )
                outcomes.append(AggregateOutcome(peer, 0.2, rspec=rspec))
                cache.take(peer, "manifest", rspec)
            self.assertEqual(cache.merge("manifest", outcomes, "Allocate", START), merge_manifests(outcomes, "Allocate", START))

    def test_islands_with_identical_switch_ids(self) -> None:
        """Two and three islands with the same client and switch IDs, Allocate's and Describe's manifests."""
        cache = AnswerCache()
        for count in (2, 3):
            for described in (False, True):
                for serial in (1, 2):
                    outcomes = island_manifests(count, described, serial)
                    for outcome in outcomes:
                        assert outcome.rspec is not None
                        cache.take(outcome.name, "manifest", outcome.rspec)
                    self.assertEqual(
                        cache.merge("manifest", outcomes, "Allocate", START), merge_manifests(outcomes, "Allocate", START)
                    )


class KeptAnswerTests(SynchronousTestCase):
    """What is checked again and what is not."""

    def setUp(self) -> None:
        self.cache = AnswerCache()
        self.good = [AggregateOutcome(PEERS[0], 0.2, rspec=advertisement(AM, SWITCHES[:2]))]

    def test_same_answer_not_parsed_again(self) -> None:
        """A peer answering what it answered before is not parsed again; the document is still whole."""
        first = self.cache.merge("advertisement", self.good, "ListResources", START)
        again = self.cache.merge("advertisement", self.good, "ListResources", START + 60)
        self.assertEqual(self.cache.checks, 1)
        self.assertEqual(self.cache.reused, 1)
        self.assertEqual(again, merge_advertisements(self.good, "ListResources", START + 60))
        self.assertNotEqual(first, again)

    def test_changed_answer_parsed(self) -> None:
        """A peer whose answer changed is parsed again, and its new resources are merged."""
        self.cache.merge("advertisement", self.good, "ListResources", START)
        changed = [AggregateOutcome(PEERS[0], 0.2, rspec=advertisement(AM, SWITCHES))]
        text = self.cache.merge("advertisement", changed, "ListResources", START)
        self.assertEqual(self.cache.checks, 2)
        self.assertIn(SWITCHES[2], text)
        self.assertEqual(text, merge_advertisements(changed, "ListResources", START))

    def test_hostile_answer_after_a_good_one(self) -> None:
        """A peer good before and hostile now: its answer goes through the hardened parser and is refused."""
        self.cache.merge("advertisement", self.good, "ListResources", START)
        hostile = [AggregateOutcome(PEERS[0], 0.2, rspec=LAUGHS), AggregateOutcome(PEERS[1], 0.2, rspec=self.good[0].rspec)]
        text = self.cache.merge("advertisement", hostile, "ListResources", START)
        self.assertEqual(text, merge_advertisements(hostile, "ListResources", START))
        entries = read_statistics(text)
        self.assertEqual(entries[0]["status"], "error")
        self.assertIn("DOCTYPE", entries[0]["exception"])
        self.assertEqual(entries[1]["status"], "success")
        self.assertNotIn("lol", text)

    def test_taken_answer_used_by_the_merge(self) -> None:
        """An answer taken as it arrived is not parsed again by the merge."""
        answer = self.cache.take(PEERS[0], "advertisement", self.good[0].rspec or "")
        self.assertIsNone(answer.error)
        self.cache.merge("advertisement", self.good, "ListResources", START)
        self.assertEqual(self.cache.checks, 1)

    def test_oldest_answers_dropped(self) -> None:
        """The cache keeps at most C{max_answers} answers."""
        cache = AnswerCache(max_answers=2)
        for peer in PEERS[:3]:
            cache.take(peer, "advertisement", self.good[0].rspec or "")
        self.assertEqual(len(cache), 2)
        cache.take(PEERS[0], "advertisement", self.good[0].rspec or "")
        self.assertEqual(cache.checks, 4)

    def test_unknown_kind(self) -> None:
        """Only advertisements and manifests are merged."""
        self.assertRaises(ValueError, self.cache.take, PEERS[0], "request", "<rspec/>")
