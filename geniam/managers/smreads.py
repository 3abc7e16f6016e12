# -*- test-case-name: tests.managers.test_slice,tests.loopback.test_sm -*-
"""
The slice manager's reads: ListResources, Describe and Status (and
Provision, which answers as Describe does).

L{SliceReadMethods} is mixed into L{geniam.managers.slice.SliceManager}.
ListResources answers the merged advertisement, from the
L{geniam.managers.adcache.AdvertisementCache} unless the option
C{cached} is false; Describe and Provision one merged manifest,
C{geni_urn}, C{geni_slivers} concatenated; Status C{geni_urn} and
C{geni_slivers} concatenated. The reads answer success with what the
reachable aggregates said and name the others; Provision keeps all or
nothing (or best effort).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred

from geniam.errors import GeniCode, GeniError, success_struct
from geniam.managers.adcache import AdvertisementCache, Fetched, ad_cache_key
from geniam.managers.arguments import flag, rspec_version, target_urns
from geniam.managers.fanout import PeerCall
from geniam.managers.peers import PeerRecord
from geniam.managers.rollup import (
    STATISTICS_FIELD,
    concatenated,
    first_member,
    result_struct,
    rollup,
    rspec_outcomes,
    statistics,
)
from geniam.managers.smpeers import known_code
from geniam.managers.version import SUPPORTED_RSPECS
from geniam.rspec.compression import compress_rspec
from geniam.trust.forwarding import Forwarding

if TYPE_CHECKING:
    from geniam.managers.slice import _Call

CACHED_OPTION = "cached"


class SliceReadMethods:
    """The work of ListResources, Describe, Provision and Status, once a call is checked."""

    cache: AdvertisementCache
    _partition: Any
    _route: Any
    _options_for: Any
    _fan: Any
    _shaped: Any
    _merged: Any
    _cpu: Any

    async def _list_resources(self, call: _Call) -> dict[str, Any]:
        options = call.options
        if "geni_slice_urn" in options:
            raise GeniError(GeniCode.BADARGS, "geni_slice_urn is not an AM API v3 option; use Describe")
        rspec_version(options, SUPPORTED_RSPECS)
        compressed = flag(options, "geni_compressed")
        use_cache = flag(options, CACHED_OPTION, True)
        forwarding = await call.context.forwarding_for_resources(options)
        callable_, unknown, excluded = self._partition(call.caller)
        key = ad_cache_key(options, [r.key for r in excluded])
        forwarded = self._options_for(call, forwarding, drop=("geni_compressed",))

        def fetch() -> Deferred[Fetched]:
            return Deferred.fromCoroutine(self._fetch_advertisement(call, forwarding, forwarded, callable_, unknown))

        if use_cache:
            cached = await self.cache.get(key, fetch)
        else:
            cached = await self.cache.refresh(key, fetch)
        value = await self._cpu(compress_rspec, cached.value) if compressed else cached.value
        struct = success_struct(value)
        struct["geniam_cache"] = {"hit": cached.hit, "age": round(cached.age, 3), "stale": cached.stale}
        if cached.details is not None:
            struct[STATISTICS_FIELD] = cached.details
        if cached.missing:
            struct["output"] = "lacks the resources of aggregates that did not answer: " + ", ".join(cached.missing)
        return struct

    async def _fetch_advertisement(
        self,
        call: _Call,
        forwarding: Forwarding,
        options: dict[str, Any],
        records: list[PeerRecord],
        unknown: list[PeerRecord],
    ) -> Fetched:
        calls = [PeerCall(r, "ListResources", (list(forwarding.credentials), options)) for r in records]
        outcomes = self._shaped(
            await self._fan(call, calls, unknown, "advertisement"), lambda v: isinstance(v, str), "an RSpec string"
        )
        if outcomes and not any(o.ok for o in outcomes):
            code, output = rollup(outcomes, False, False)
            raise GeniError(known_code(code), f"no aggregate listed its resources: {output}")
        rspecs = [o.value if o.ok else None for o in outcomes]
        merged = await self._merged("advertisement", rspec_outcomes(outcomes, rspecs), "ListResources")
        missing = tuple(o.name for o in outcomes if not o.ok)
        return Fetched(merged, missing, statistics("ListResources", outcomes))

    async def _manifest_call(self, call: _Call, urns: Any) -> dict[str, Any]:
        rspec_version(call.options, SUPPORTED_RSPECS)
        compressed = call.method == "Describe" and flag(call.options, "geni_compressed")
        # A read answers with what the reachable aggregates said; a change keeps all or nothing.
        best_effort = call.method == "Describe" or flag(call.options, "geni_best_effort")
        target = target_urns(urns)
        slice_urn = target.slice_urn
        forwarding = await call.context.forwarding_for_slice(call.method, slice_urn, call.options)
        plan, unknown = self._route(call, target)
        options = self._options_for(call, forwarding, drop=("geni_compressed",))
        calls = [PeerCall(r, call.method, (own, list(forwarding.credentials), options)) for r, own in plan]
        try:
            outcomes = await self._fan(call, calls, unknown, "manifest")
        finally:
            if call.method == "Provision":
                self.cache.invalidate()
        outcomes = self._shaped(outcomes, _manifest_shaped, "a struct with geni_rspec and geni_slivers")
        whole = slice_urn is not None
        code, output = rollup(outcomes, whole, best_effort)
        rspecs = [o.value["geni_rspec"] if o.ok else None for o in outcomes]
        manifest = await self._merged("manifest", rspec_outcomes(outcomes, rspecs), call.method)
        if compressed:
            manifest = await self._cpu(compress_rspec, manifest)
        value = {
            "geni_rspec": manifest,
            "geni_urn": first_member(outcomes, "geni_urn", slice_urn or forwarding.slice_urn or ""),
            "geni_slivers": concatenated(outcomes, "geni_slivers"),
        }
        return result_struct(call.method, outcomes, value, code, output)

    async def _status(self, call: _Call, urns: Any) -> dict[str, Any]:
        target = target_urns(urns)
        slice_urn = target.slice_urn
        forwarding = await call.context.forwarding_for_slice("Status", slice_urn, call.options)
        plan, unknown = self._route(call, target)
        options = self._options_for(call, forwarding)
        calls = [PeerCall(r, "Status", (own, list(forwarding.credentials), options)) for r, own in plan]
        outcomes = self._shaped(
            await self._fan(call, calls, unknown),
            lambda v: isinstance(v, dict) and isinstance(v.get("geni_slivers"), list),
            "a struct with geni_slivers",
        )
        code, output = rollup(outcomes, slice_urn is not None, True)
        value = {
            "geni_urn": first_member(outcomes, "geni_urn", slice_urn or forwarding.slice_urn or ""),
            "geni_slivers": concatenated(outcomes, "geni_slivers"),
        }
        return result_struct("Status", outcomes, value, code, output)


def _manifest_shaped(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("geni_rspec"), str)
        and isinstance(value.get("geni_slivers", []), list)
    )
