"""
Tests for the advertisement cache (L{geniam.managers.adcache}) on its own
and inside the slice manager: keys, the C{cached} option, TTL,
stale-while-refresh and invalidation.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.managers.adcache import AdKey, AdvertisementCache, ad_cache_key
from geniam.rspec.compression import decompress_rspec
from geniam.rspec.merge import read_statistics
from tests.managers.slice_support import ALICE, GENI_V3, SLICE, Caller, FakeAggregate, am_urn, called_by, make_sm, request

KEY = AdKey("geni", "3", False)


class AdCacheKeyTests(SynchronousTestCase):
    """The key holds everything that changes the merged document."""

    def test_options_in_the_key(self) -> None:
        """RSpec type and version (normalised), geni_available and the left-out peers make the key."""
        base = ad_cache_key({"geni_rspec_version": {"type": "GENI", "version": "3"}})
        self.assertEqual(base, AdKey("geni", "3", False, frozenset()))
        self.assertEqual(ad_cache_key({"geni_rspec_version": {"type": "geni ", "version": 3}}), base)
        self.assertNotEqual(ad_cache_key({"geni_rspec_version": GENI_V3, "geni_available": True}), base)
        self.assertNotEqual(ad_cache_key({"geni_rspec_version": {"type": "GENI", "version": "4"}}), base)
        self.assertNotEqual(ad_cache_key({"geni_rspec_version": GENI_V3}, ["am1"]), base)

    def test_compression_is_not_in_the_key(self) -> None:
        """geni_compressed only changes the encoding, which is applied after the cache."""
        self.assertEqual(
            ad_cache_key({"geni_rspec_version": GENI_V3, "geni_compressed": True}),
            ad_cache_key({"geni_rspec_version": GENI_V3}),
        )

    def test_bad_available(self) -> None:
        """A malformed geni_available is BADARGS."""
        with self.assertRaises(GeniError) as cm:
            ad_cache_key({"geni_rspec_version": GENI_V3, "geni_available": "perhaps"})
        self.assertEqual(cm.exception.code, GeniCode.BADARGS)


class AdvertisementCacheTests(SynchronousTestCase):
    """Freshness, sharing and invalidation, on a clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.cache = AdvertisementCache(self.clock, ttl=10.0, stale_ttl=5.0)
        self.fetches: list[Deferred[str]] = []

    def fetch(self) -> Deferred[str]:
        d: Deferred[str] = Deferred()
        self.fetches.append(d)
        return d

    def test_miss_then_hit(self) -> None:
        """A miss fetches; within the TTL the entry is served without fetching."""
        d = self.cache.get(KEY, self.fetch)
        self.fetches[0].callback("ad-1")
        answer = self.successResultOf(d)
        self.assertEqual((answer.value, answer.hit), ("ad-1", False))
        self.clock.advance(9)
        hit = self.successResultOf(self.cache.get(KEY, self.fetch))
        self.assertEqual((hit.value, hit.hit, hit.age, hit.stale), ("ad-1", True, 9.0, False))
        self.assertEqual(len(self.fetches), 1)
        self.assertEqual((self.cache.hits, self.cache.misses), (1, 1))

    def test_concurrent_misses_share_one_fetch(self) -> None:
        """Callers missing the same key at once share a fetch; each has its own Deferred."""
        first, second = self.cache.get(KEY, self.fetch), self.cache.get(KEY, self.fetch)
        self.assertEqual(len(self.fetches), 1)
        self.assertIsNot(first, second)
        self.fetches[0].callback("ad")
        self.assertEqual(self.successResultOf(second).value, "ad")

    def test_stale_while_refresh(self) -> None:
        """Past the TTL the old entry is served at once while one refresh runs."""
        self.cache.store(KEY, "old")
        self.clock.advance(11)
        stale = self.successResultOf(self.cache.get(KEY, self.fetch))
        self.assertEqual((stale.value, stale.stale), ("old", True))
        again = self.successResultOf(self.cache.get(KEY, self.fetch))
        self.assertEqual(again.value, "old")
        self.assertEqual(len(self.fetches), 1)
        self.fetches[0].callback("new")
        fresh = self.successResultOf(self.cache.get(KEY, self.fetch))
        self.assertEqual((fresh.value, fresh.stale), ("new", False))

    def test_too_old_is_a_miss(self) -> None:
        """Past TTL plus the stale period the caller waits for a fetch."""
        self.cache.store(KEY, "old")
        self.clock.advance(15)
        d = self.cache.get(KEY, self.fetch)
        self.assertNoResult(d)
        self.fetches[0].callback("new")
        self.assertEqual(self.successResultOf(d).value, "new")

    def test_invalidate_drops_and_ignores_older_fetches(self) -> None:
        """After invalidation entries are gone and a fetch started before does not store."""
        self.cache.store(AdKey("geni", "3", True), "available")
        d = self.cache.get(KEY, self.fetch)
        self.cache.invalidate()
        self.assertEqual(len(self.cache), 0)
        self.fetches[0].callback("from before")
        self.assertEqual(self.successResultOf(d).value, "from before")
        self.assertNotIn(KEY, self.cache)
        self.assertIsNone(self.cache.peek(KEY))

    def test_failed_fetch_is_not_stored(self) -> None:
        """A failed fetch fails its waiters and leaves nothing behind."""
        d = self.cache.get(KEY, lambda: fail(GeniError(GeniCode.RPCERROR, "all down")))
        self.failureResultOf(d, GeniError)
        self.assertEqual(len(self.cache), 0)
        self.assertEqual(self.successResultOf(self.cache.get(KEY, lambda: succeed("ok"))).value, "ok")

    def test_refresh_bypasses(self) -> None:
        """refresh fetches even when a fresh entry exists, and stores the result."""
        self.cache.store(KEY, "old")
        d = self.cache.refresh(KEY, self.fetch)
        self.fetches[0].callback("new")
        self.assertEqual(self.successResultOf(d).value, "new")
        self.assertEqual(self.cache.peek(KEY).value, "new")  # type: ignore[union-attr]

    def test_expire_and_bound(self) -> None:
        """expire drops entries too old to serve; the number of keys is bounded."""
        cache = AdvertisementCache(self.clock, ttl=10.0, stale_ttl=0.0, max_entries=2)
        for i in range(3):
            cache.store(AdKey("geni", str(i), False), f"ad{i}")
        self.assertEqual(len(cache), 2)
        self.clock.advance(10)
        self.assertEqual(cache.expire(), 2)


class SliceManagerCacheTests(SynchronousTestCase):
    """ListResources through the cache."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.ams = [FakeAggregate("am1", self.clock, 1.0), FakeAggregate("am2", self.clock, 1.0)]
        self.sm, _ = make_sm(self.ams, self.clock, cache_ttl=30.0, stale_ttl=30.0)
        self.alice = Caller(ALICE)

    def ask(self, caller: Any = None, **options: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(
            self.sm.ListResources(called_by(caller or self.alice, []), {"geni_rspec_version": GENI_V3, **options})
        )

    def listed(self) -> list[int]:
        return [a.methods().count("ListResources") for a in self.ams]

    def test_second_call_is_cached(self) -> None:
        """The merged advertisement is served from the cache the second time."""
        d = self.ask()
        self.clock.advance(1)
        first = self.successResultOf(d)
        second = self.successResultOf(self.ask())
        self.assertEqual(second["value"], first["value"])
        self.assertEqual(self.listed(), [1, 1])
        self.assertEqual((first["geniam_cache"]["hit"], second["geniam_cache"]["hit"]), (False, True))

    def test_cached_false_bypasses(self) -> None:
        """The option cached=false asks the aggregates again."""
        d = self.ask()
        self.clock.advance(1)
        self.successResultOf(d)
        d = self.ask(cached=False)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertFalse(self.successResultOf(d)["geniam_cache"]["hit"])
        self.assertEqual(self.listed(), [2, 2])

    def test_available_is_another_entry(self) -> None:
        """geni_available changes the document, so it is cached apart."""
        d = self.ask()
        self.clock.advance(1)
        everything = self.successResultOf(d)["value"]
        d = self.ask(geni_available=True)
        self.clock.advance(1)
        available = self.successResultOf(d)["value"]
        self.assertIn("spare", everything)
        self.assertNotIn("spare", available)
        self.assertEqual(self.ams[0].last("ListResources").options["geni_available"], True)

    def test_compressed_from_the_same_entry(self) -> None:
        """A compressed request is answered from the plain entry, compressed."""
        d = self.ask()
        self.clock.advance(1)
        plain = self.successResultOf(d)["value"]
        compressed = self.successResultOf(self.ask(geni_compressed=True))
        self.assertEqual(decompress_rspec(compressed["value"]), plain)
        self.assertEqual(self.listed(), [1, 1])
        self.assertNotIn("geni_compressed", self.ams[0].last("ListResources").options)

    def test_ttl_and_stale_while_refresh(self) -> None:
        """Past the TTL the stale document is answered at once and refreshed in the background."""
        d = self.ask()
        self.clock.advance(1)
        self.successResultOf(d)
        self.clock.advance(31)
        stale = self.successResultOf(self.ask())
        self.assertTrue(stale["geniam_cache"]["stale"])
        self.assertEqual(self.listed(), [2, 2])
        self.clock.advance(1)
        fresh = self.successResultOf(self.ask())
        self.assertEqual((fresh["geniam_cache"]["hit"], fresh["geniam_cache"]["stale"]), (True, False))
        self.assertEqual(self.listed(), [2, 2])

    def test_allocate_invalidates(self) -> None:
        """Forwarding an Allocate, Provision or Delete drops the cached advertisements."""
        for method, args in (
            ("Allocate", (SLICE, request("am1"), {})),
            ("Provision", ([SLICE], {"geni_rspec_version": GENI_V3})),
            ("Delete", ([SLICE], {})),
        ):
            d = self.ask()
            self.clock.advance(1)
            self.successResultOf(d)
            self.assertEqual(len(self.sm.cache), 1, method)
            d = Deferred.fromCoroutine(getattr(self.sm, method)(called_by(self.alice), *args))
            self.clock.advance(1)
            self.successResultOf(d)
            self.assertEqual(len(self.sm.cache), 0, method)

    def test_listing_started_before_allocate_is_not_cached(self) -> None:
        """An advertisement fetched across an Allocate is answered but not kept."""
        listing = self.ask()
        allocate = Deferred.fromCoroutine(self.sm.Allocate(called_by(self.alice, []), SLICE, request("am2"), {}))
        self.clock.advance(1)
        self.successResultOf(listing)
        self.successResultOf(allocate)
        self.assertEqual(len(self.sm.cache), 0)

    def test_peer_caller_gets_its_own_entry(self) -> None:
        """A peer calling gets a document without its own resources, cached apart from users'."""
        d = self.ask()
        self.clock.advance(1)
        users = self.successResultOf(d)["value"]
        d = self.ask(caller=Caller(am_urn("am1")))
        self.clock.advance(1)
        peers = self.successResultOf(d)["value"]
        self.assertIn("am1.example+node", users)
        self.assertNotIn("am1.example+node", peers)
        self.assertEqual(self.listed(), [1, 2])
        self.assertEqual([s["name"] for s in read_statistics(peers)], [am_urn("am2")])
