# -*- test-case-name: tests.managers.test_adcache -*-
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

A fetch may answer a L{Fetched} naming the aggregates its document lacks
(they did not answer). Such a partial entry is fresh for C{partial_ttl}
only (0: it is never served from the cache), with no stale period, and
L{AdvertisementCache.drop_partial} drops every partial entry (the slice
manager calls it when an aggregate answers again).

A TTL of 0 turns the cache off: every call fetches (concurrent calls
still share a fetch that started less than C{JOIN_WINDOW} seconds ago).
A refresh (the option C{cached} false) likewise joins only a fetch that
started less than C{JOIN_WINDOW} seconds before it.
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

DEFAULT_PARTIAL_TTL = 5.0
"""Seconds an advertisement lacking an aggregate is served as fresh."""

JOIN_WINDOW = 1.0
"""Seconds after its start a running fetch may still be joined by a caller that wants a fresh answer."""


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
class Fetched:
    """
    What a fetch found.

    @ivar value: the merged advertisement.
    @ivar missing: the names of the aggregates it lacks.
    @ivar details: anything the caller keeps with it (the statistics).
    """

    value: str
    missing: tuple[str, ...] = ()
    details: Any = None


@dataclass(frozen=True)
class CachedAd:
    """
    An advertisement as the cache answers it.

    @ivar value: the merged advertisement.
    @ivar age: seconds since it was fetched.
    @ivar hit: whether it came from the cache (rather than a fetch this caller waited for).
    @ivar stale: whether it was older than the TTL (a refresh is then running).
    @ivar missing: the aggregates it lacks.
    @ivar details: what the fetch kept with it.
    """

    value: str
    age: float
    hit: bool
    stale: bool = False
    missing: tuple[str, ...] = ()
    details: Any = None


def as_fetched(result: str | Fetched) -> Fetched:
    """A fetch's result as a L{Fetched}."""
    return result if isinstance(result, Fetched) else Fetched(result)


@dataclass
class _Entry:
    fetched: Fetched
    fetched_at: float

    @property
    def partial(self) -> bool:
        return bool(self.fetched.missing)


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
        partial_ttl: float = DEFAULT_PARTIAL_TTL,
    ) -> None:
        """
        @param stale_ttl: defaults to C{ttl}.
        @param partial_ttl: seconds an entry lacking an aggregate is fresh (at most C{ttl}).
        """
        self._clock = clock
        self.ttl = ttl
        self.stale_ttl = ttl if stale_ttl is None else stale_ttl
        self.partial_ttl = min(partial_ttl, ttl)
        self.max_entries = max_entries
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[AdKey, _Entry] = OrderedDict()
        self._fetching: dict[AdKey, tuple[int, float, Shared[Fetched]]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def invalidate(self) -> None:
        """Drop every entry; fetches already running will not store theirs."""
        self._entries.clear()
        self._fetching.clear()
        self.generation += 1

    @property
    def enabled(self) -> bool:
        """Whether answers are kept at all (a TTL of 0 turns the cache off)."""
        return self.ttl > 0

    def drop_partial(self) -> int:
        """
        Drop the entries lacking an aggregate (one has answered again).

        @return: how many were dropped.
        """
        partial = [key for key, entry in self._entries.items() if entry.partial]
        for key in partial:
            del self._entries[key]
        return len(partial)

    def store(self, key: AdKey, value: str | Fetched, generation: int | None = None) -> bool:
        """
        Keep C{value} for C{key}, unless the cache was invalidated since
        C{generation} (the generation read when the fetch started), or is off.

        @return: whether it was stored.
        """
        fetched = as_fetched(value)
        if generation is not None and generation != self.generation:
            return False
        if not self.enabled or (fetched.missing and self.partial_ttl <= 0):
            return False
        self._entries[key] = _Entry(fetched, self._clock.seconds())
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
        fetched = entry.fetched
        ttl, stale_ttl = (self.partial_ttl, 0.0) if entry.partial else (self.ttl, self.stale_ttl)
        if age < ttl:
            return CachedAd(fetched.value, age, True, False, fetched.missing, fetched.details)
        if age < ttl + stale_ttl:
            return CachedAd(fetched.value, age, True, True, fetched.missing, fetched.details)
        del self._entries[key]
        return None

    def get(self, key: AdKey, fetch: Callable[[], Deferred[Any]]) -> Deferred[CachedAd]:
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
        return self._answer(self._fetch(key, fetch, None if self.enabled else JOIN_WINDOW))

    def refresh(self, key: AdKey, fetch: Callable[[], Deferred[Any]]) -> Deferred[CachedAd]:
        """
        Fetch C{key} now, whatever the cache holds, and store it; a fetch
        already running is joined only if it started less than
        C{JOIN_WINDOW} seconds ago.
        """
        return self._answer(self._fetch(key, fetch, JOIN_WINDOW))

    @staticmethod
    def _answer(shared: Shared[Fetched]) -> Deferred[CachedAd]:
        waiter: Deferred[CachedAd] = shared.wait().addCallback(
            lambda fetched: CachedAd(fetched.value, 0.0, False, False, fetched.missing, fetched.details)
        )
        return waiter

    def _fetch(self, key: AdKey, fetch: Callable[[], Deferred[Any]], join_window: float | None = None) -> Shared[Fetched]:
        running = self._fetching.get(key)
        now = self._clock.seconds()
        if running is not None and running[0] == self.generation:
            if join_window is None or now - running[1] < join_window:
                return running[2]
        generation = self.generation
        d = fetch().addCallback(as_fetched)

        def done(result: Any) -> Any:
            current = self._fetching.get(key)
            if current is not None and current[2] is shared:
                del self._fetching[key]
            if isinstance(result, Failure):
                self.log.warn("fetching an advertisement failed: {error}", error=result.getErrorMessage())
            else:
                self.store(key, result, generation)
            return result

        d.addBoth(done)
        shared: Shared[Fetched] = Shared(d)
        if not shared.done:
            self._fetching[key] = (generation, now, shared)
        return shared

    def expire(self) -> int:
        """
        Drop the entries too old to be served.

        @return: how many were dropped.
        """
        now = self._clock.seconds()
        old = [
            key
            for key, entry in self._entries.items()
            if entry.fetched_at <= now - (self.partial_ttl if entry.partial else self.ttl + self.stale_ttl)
        ]
        for key in old:
            del self._entries[key]
        return len(old)
