# -*- test-case-name: tests.test_slice_cache -*-
"""
The slice manager's cache of merged advertisements.

An entry is keyed on everything that changes the merged document
(L{AdKey}): the RSpec type and version asked for, C{geni_available}, and
the set of peers left out of the call (a peer calling the slice manager
is not asked, so its resources are missing from what it gets back).
C{geni_compressed} changes only the encoding of the answer: the cache
holds the plain document and the slice manager compresses it on the way
out, so one entry serves both encodings and each gets its own answer.

Freshness:
  - younger than C{ttl}: served as it is;
  - older, but younger than C{ttl + stale_ttl}: served at once while one
    refresh runs in the background (stale while refresh);
  - older still, or missing: the caller waits for a fetch; concurrent
    callers of one key share one fetch.

L{AdvertisementCache.invalidate} drops every entry (the slice manager
calls it when it forwards an Allocate, Provision or Delete) and makes any
fetch already running for an older generation leave the cache alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.managers.arguments import flag
from geniam.managers.shared import Shared

DEFAULT_TTL = 60.0
"""Seconds a merged advertisement is served as fresh."""

DEFAULT_MAX_ENTRIES = 64
"""How many keys the cache holds at most."""


@dataclass(frozen=True)
class AdKey:
    """
    What a merged advertisement depends on.

    @ivar rspec_type: the RSpec type asked for, lower-case (C{geni}).
    @ivar rspec_version: the RSpec version asked for (C{3}).
    @ivar available: the C{geni_available} option.
    @ivar excluded: the keys of the peers not called (the caller, when it is a peer).
    """

    rspec_type: str
    rspec_version: str
    available: bool
    excluded: frozenset[str] = frozenset()


def ad_cache_key(options: Mapping[str, Any], excluded: Iterable[str] = ()) -> AdKey:
    """
    The cache key of a ListResources call.

    @param options: the call's options, already checked (C{geni_rspec_version} present).
    @param excluded: the keys of the peers left out of the call.
    @raise GeniError: BADARGS for a malformed C{geni_available}.
    """
    version = options["geni_rspec_version"]
    return AdKey(
        str(version["type"]).strip().lower(),
        str(version["version"]).strip(),
        flag(dict(options), "geni_available"),
        frozenset(excluded),
    )


@dataclass(frozen=True)
class CachedAd:
    """
    An advertisement as the cache answers it.

    @ivar value: the merged advertisement.
    @ivar age: seconds since it was fetched.
    @ivar hit: whether it came from the cache (rather than a fetch this caller waited for).
    @ivar stale: whether it was older than the TTL (a refresh is then running).
    """

    value: str
    age: float
    hit: bool
    stale: bool = False


@dataclass
class _Entry:
    value: str
    fetched_at: float


class AdvertisementCache:
    """
    Merged advertisements by L{AdKey}.

    @ivar ttl: seconds an entry is fresh.
    @ivar stale_ttl: seconds past the TTL an entry may still be served
        while it is refreshed (0 turns stale-while-refresh off).
    @ivar generation: bumped by L{invalidate}.
    @ivar hits: answers from the cache.
    @ivar misses: answers a caller waited for.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        ttl: float = DEFAULT_TTL,
        stale_ttl: float | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        """
        @param stale_ttl: defaults to C{ttl}.
        """
        self._clock = clock
        self.ttl = ttl
        self.stale_ttl = ttl if stale_ttl is None else stale_ttl
        self.max_entries = max_entries
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[AdKey, _Entry] = OrderedDict()
        self._fetching: dict[AdKey, tuple[int, Shared[str]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def invalidate(self) -> None:
        """Drop every entry; fetches already running will not store theirs."""
        self._entries.clear()
        self._fetching.clear()
        self.generation += 1

    def store(self, key: AdKey, value: str, generation: int | None = None) -> bool:
        """
        Keep C{value} for C{key}, unless the cache was invalidated since
        C{generation} (the generation read when the fetch started).

        @return: whether it was stored.
        """
        if generation is not None and generation != self.generation:
            return False
        self._entries[key] = _Entry(value, self._clock.seconds())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def peek(self, key: AdKey) -> CachedAd | None:
        """The entry for C{key} if it may still be served (fresh or stale), without fetching."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        age = self._clock.seconds() - entry.fetched_at
        if age < self.ttl:
            return CachedAd(entry.value, age, True)
        if age < self.ttl + self.stale_ttl:
            return CachedAd(entry.value, age, True, stale=True)
        del self._entries[key]
        return None

    def get(self, key: AdKey, fetch: Callable[[], Deferred[str]]) -> Deferred[CachedAd]:
        """
        Answer C{key} from the cache, or by C{fetch} (shared with concurrent callers).

        A stale entry is answered at once and refreshed in the background.

        @param fetch: fetches and merges the advertisement.
        @return: a new Deferred firing with a L{CachedAd}.
        """
        cached = self.peek(key)
        if cached is not None:
            self.hits += 1
            if cached.stale:
                self._fetch(key, fetch)
            return succeed(cached)
        self.misses += 1
        shared = self._fetch(key, fetch)
        waiter: Deferred[CachedAd] = shared.wait().addCallback(lambda value: CachedAd(value, 0.0, False))
        return waiter

    def refresh(self, key: AdKey, fetch: Callable[[], Deferred[str]]) -> Deferred[str]:
        """Fetch C{key} now, whatever the cache holds (sharing a fetch already running), and store it."""
        return self._fetch(key, fetch).wait()

    def _fetch(self, key: AdKey, fetch: Callable[[], Deferred[str]]) -> Shared[str]:
        running = self._fetching.get(key)
        if running is not None and running[0] == self.generation:
            return running[1]
        generation = self.generation
        d = fetch()

        def done(result: Any) -> Any:
            current = self._fetching.get(key)
            if current is not None and current[1] is shared:
                del self._fetching[key]
            if isinstance(result, Failure):
                self.log.warn("fetching an advertisement failed: {error}", error=result.getErrorMessage())
            else:
                self.store(key, result, generation)
            return result

        d.addBoth(done)
        shared: Shared[str] = Shared(d)
        if not shared.done:
            self._fetching[key] = (generation, shared)
        return shared

    def expire(self) -> int:
        """
        Drop the entries too old to be served.

        @return: how many were dropped.
        """
        limit = self._clock.seconds() - self.ttl - self.stale_ttl
        old = [key for key, entry in self._entries.items() if entry.fetched_at <= limit]
        for key in old:
            del self._entries[key]
        return len(old)
