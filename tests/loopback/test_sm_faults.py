"""
The slice manager across islands and under faults, end to end: real
aggregate managers (TLS XML-RPC with client certificates, SQLite stores)
behind a real slice manager on 127.0.0.1, real signed and delegated
credentials, and one L{Clock} giving all of them the time, so that the
slice manager's timers (hung-peer checks, probes, undo retries) move only
when a test moves them.

An aggregate is made to hang with a L{Gate} on its API object: its
listener accepts and reads every call, and the call waits until the test
opens the gate; then the aggregate carries it out, as an aggregate that
resumes carries out a call its client gave up on. Tests wait on
Deferreds for what happens on the network (L{Signals}), never on time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from geniam.client import AMClient, value_of
from geniam.demo import federated_request
from geniam.errors import GeniCode
from geniam.loopback import LoopbackFederation
from geniam.managers.breaker import BreakerState
from geniam.managers.slice import SliceManager, SliceManagerSettings
from geniam.managers.undo import JOURNAL_NAME, UndoEntry, Undoer, UndoJournal
from geniam.rspec.merge import read_statistics
from geniam.rspec.parser import parse_rspec
from geniam.rspec.request import build_request
from geniam.tap.sm import SliceManagerService
from tests.domains import copied_domain

HOUR = 3600.0
NAMES = ("am1", "am2", "am3")
API_METHODS = (
    "GetVersion", "ListResources", "Describe", "Allocate", "Renew",
    "Provision", "Status", "PerformOperationalAction", "Delete", "Shutdown",
)
SETTINGS = SliceManagerSettings(
    peer_timeout=30.0,
    deadline=60.0,
    hung_after=5.0,
    probe_timeout=2.0,
    probe_interval=4.0,
    probe_max_interval=10.0,
    undo_retry=30.0,
)


def make_domain(folder: Path) -> None:
    """Make a trust domain with three aggregates, a slice manager and alice in C{folder}."""
    clock = Clock()
    clock.advance(time.time() - HOUR)
    LoopbackFederation(folder, reactor, clock, aggregate_names=NAMES, slice_manager="sm")


class Signals:
    """
    Deferreds for the next occurrence of events, by key. A waiter fires in
    the reactor's next turn, once the code that saw the event is done.
    """

    def __init__(self) -> None:
        self._waiting: dict[Hashable, list[Deferred[None]]] = {}

    def next(self, key: Hashable) -> Deferred[None]:
        """A Deferred firing at the next occurrence of C{key} from now on."""
        d: Deferred[None] = Deferred()
        self._waiting.setdefault(key, []).append(d)
        return d

    def fire(self, key: Hashable) -> None:
        """C{key} occurred."""
        for d in self._waiting.pop(key, []):
            reactor.callLater(0, d.callback, None)  # type: ignore[attr-defined]


class Gate:
    """
    Holds, while closed, every AM API call an aggregate's API object gets:
    the aggregate reads the call and does not answer. Opening the gate
    carries out the held calls.

    @ivar carried_out: the methods carried out, in order.
    """

    def __init__(self, manager: Any, methods: tuple[str, ...] = API_METHODS) -> None:
        self.closed = False
        self.carried_out: list[str] = []
        self.signals = Signals()
        self._held: list[Deferred[None]] = []
        for method in methods:
            setattr(manager, method, self._guarded(method, getattr(manager, method)))

    def _guarded(self, method: str, call: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(*args: Any) -> Any:
            if self.closed:
                release: Deferred[None] = Deferred()
                self._held.append(release)
                self.signals.fire(("held", method))
                await release
            try:
                return await call(*args)
            finally:
                self.carried_out.append(method)
                self.signals.fire(("done", method))

        return guarded

    def close(self) -> None:
        """Hold the calls from now on."""
        self.closed = True

    def open(self) -> None:
        """Carry out the held calls, and answer the next ones at once."""
        self.closed = False
        held, self._held = self._held, []
        for release in held:
            release.callback(None)

    def held(self, method: str) -> Deferred[None]:
        """Fires when the next call of C{method} is held."""
        return self.signals.next(("held", method))

    def done(self, method: str) -> Deferred[None]:
        """Fires when the next call of C{method} has been carried out."""
        return self.signals.next(("done", method))


def watch_replies(manager: SliceManager) -> Signals:
    """Signals C{(peer URL, method)} each time the slice manager has a peer's reply (or its failure)."""
    signals = Signals()
    for record in manager.records:
        call = record.peer.call

        def watched(method: str, *params: Any, _call: Any = call, _url: str = record.url) -> Deferred[Any]:
            d: Deferred[Any] = _call(method, *params)

            def seen(result: Any) -> Any:
                signals.fire((_url, method))
                return result

            return d.addBoth(seen)

        record.peer.call = watched  # type: ignore[method-assign]
    return signals


def watch_undo_rounds(undo: Undoer) -> Signals:
    """Signals C{"round"} each time an undo attempt (before an answer, or by the retry loop) has ended."""
    signals = Signals()
    attempt = undo.attempt

    def watched(entries: Any, deadline: float | None = None) -> Deferred[list[UndoEntry]]:
        d = attempt(entries, deadline)

        def ended(result: Any) -> Any:
            signals.fire("round")
            return result

        return d.addBoth(ended)

    undo.attempt = watched  # type: ignore[method-assign]
    return signals


def identities(manifest: str) -> set[tuple[str, ...]]:
    """Every top-level element of a manifest but statistics, by tag and identifying attributes."""
    attributes = ("client_id", "component_manager_id", "component_id", "sliver_id")
    return {
        (str(element.tag),) + tuple(element.get(a) or "" for a in attributes)
        for element in parse_rspec(manifest, "manifest")
        if isinstance(element.tag, str) and not element.tag.endswith("statistics")
    }


class FaultHarness(TestCase):
    """Aggregates and a slice manager sharing one clock, with a gate on each aggregate."""

    timeout = 60

    async def start(self, names: tuple[str, ...] = NAMES[:2], sm_knows_urns: bool = True, with_sm: bool = True) -> None:
        folder = copied_domain(self, "sm-faults", make_domain)
        self.clock = Clock()
        self.clock.advance(time.time())
        fed = LoopbackFederation(
            folder, reactor, self.clock, aggregate_names=names, slice_manager="sm",
            sm_settings=SETTINGS, sm_knows_urns=sm_knows_urns,
        )
        self.addCleanup(lambda: Deferred.fromCoroutine(fed.stop()))
        self.fed = fed
        self.gates: dict[str, Gate] = {}
        for name in names:
            await fed.start_aggregate(name)
            self.gates[name] = gate = Gate(fed.aggregates[name].manager)
            self.addCleanup(gate.open)
        self.urns = [fed.aggregates[name].urn for name in names]
        self.slice_urn = fed.slice_urn("exp1")
        if with_sm:
            await self.run_sm(self.build_sm())

    def build_sm(self) -> SliceManagerService:
        """Build (not start) a slice manager on the federation's data folder, its replies and undo rounds watched."""
        sm = self.fed.build_slice_manager()
        self.replies = watch_replies(sm.manager)
        self.rounds = watch_undo_rounds(sm.manager.undo)
        return sm

    async def run_sm(self, sm: SliceManagerService) -> SliceManagerService:
        """Start C{sm}; fire once it listens and has asked every aggregate's version."""
        self.fed.sm = self.sm = sm
        self.sm_started = self.clock.seconds()
        sm.startService()
        await sm.when_started()
        return sm

    def client(self, server: str = "sm") -> AMClient:
        """alice's client: through the slice manager with her credentials delegated to it, or straight to an aggregate."""
        fed = self.fed
        slice_credential = fed.delegated_slice_credential("exp1", "alice") if server == "sm" else fed.slice_credential("exp1", "alice")
        return fed.client("alice", server, (fed.user_credential("alice"), slice_credential))

    def url(self, name: str) -> str:
        return self.fed.aggregate_url(name)

    def advance_to(self, when: float) -> None:
        self.clock.advance(when - self.clock.seconds())

    async def live(self, name: str) -> list[Any]:
        """The live bookings of the slice at aggregate C{name}, read from its store."""
        bookings: list[Any] = await self.fed.aggregates[name].store.list_by_slice(self.slice_urn, live_only=True)
        return bookings

    def request(self) -> str:
        now = self.clock.seconds()
        return federated_request(now + HOUR, now + 2 * HOUR, self.urns)


class ManifestRoundTripTests(FaultHarness):
    """Islands with the same client IDs and switch IDs keep every element through the slice manager."""

    async def direct(self, names: tuple[str, ...]) -> set[tuple[str, ...]]:
        """Every element of the slice's manifests, as each aggregate's own Describe names them."""
        found: set[tuple[str, ...]] = set()
        for name in names:
            found |= identities(value_of(await self.client(name).describe([self.slice_urn]))["geni_rspec"])
        return found

    async def round_trip(self, names: tuple[str, ...]) -> None:
        await self.start(names)
        client = self.client()
        allocated = value_of(await client.allocate(self.slice_urn, self.request()))
        direct = await self.direct(names)
        switches = [i for i in direct if i[0].endswith("}switch")]
        self.assertEqual(len(switches), 4 * len(names))
        self.assertEqual({i[2] for i in switches}, set(self.urns))
        self.assertEqual(len({i[3].rpartition("+")[2] for i in switches}), 4)
        self.assertEqual(len([i for i in direct if i[1] == "island"]), len(names))
        # An aggregate's Allocate manifest names its island node as the request did, its Describe as "island".
        self.assertEqual({i[:1] + i[2:] for i in identities(allocated["geni_rspec"])}, {i[:1] + i[2:] for i in direct})
        self.assertEqual(identities(value_of(await client.describe([self.slice_urn]))["geni_rspec"]), direct)
        now = self.clock.seconds()
        for urn in self.urns:
            value_of(await client.allocate(self.slice_urn, build_request(now + 3 * HOUR, now + 4 * HOUR, am_urn=urn)))
        described = value_of(await client.describe([self.slice_urn]))
        direct = await self.direct(names)
        self.assertEqual(len([i for i in direct if i[0].endswith("}node") and not i[3]]), 2 * len(names))
        self.assertEqual(len([i for i in direct if i[1] == "island"]), len(names))
        self.assertEqual(identities(described["geni_rspec"]), direct)
        self.assertEqual(len(described["geni_slivers"]), 2 * len(names))

    async def test_two_islands(self) -> None:
        """
        Two islands booked through the slice manager with one request,
        then each again with its own one-island request: though every
        island node is C{island} and every island's switches have the same
        four DPIDs as client IDs, the manifests of Allocate and of Describe
        through the slice manager hold exactly the elements each
        aggregate's own Describe names (each booking's, per island).
        """
        await self.round_trip(NAMES[:2])

    async def test_three_islands(self) -> None:
        """The same with three islands."""
        await self.round_trip(NAMES)


class HangingAllocateTests(FaultHarness):
    """A multi-island Allocate while one aggregate hangs leaves no booking behind."""

    async def hang_allocate(self) -> dict[str, Any]:
        """
        Allocate on am1 and am2 while am2 hangs; am2 is found hung after
        hung_after plus probe_timeout, and the answer comes once am1's
        part is undone.
        """
        await self.start()
        gate = self.gates["am2"]
        gate.close()
        am1_answered = self.replies.next((self.url("am1"), "Allocate"))
        held = gate.held("Allocate")
        answer = self.client().allocate(self.slice_urn, self.request())
        await held
        await am1_answered
        self.assertEqual(len(await self.live("am1")), 1)
        probed = gate.held("GetVersion")
        self.clock.advance(SETTINGS.hung_after)
        await probed
        self.assertNoResult(answer)
        self.clock.advance(SETTINGS.probe_timeout)
        struct: dict[str, Any] = await answer
        self.assertEqual(struct["code"]["geni_code"], GeniCode.TIMEDOUT, struct["output"])
        self.assertEqual(struct["geniam_undo"]["done"], [self.urns[0]])
        self.assertEqual([p["name"] for p in struct["geniam_undo"]["pending"]], [self.urns[1]])
        self.assertEqual(await self.live("am1"), [])
        self.assertEqual(await self.live("am2"), [])
        return struct

    async def resume_am2(self) -> None:
        """am2 resumes and carries out the Allocate the slice manager gave up on: an orphan booking."""
        carried_out = self.gates["am2"].done("Allocate")
        self.gates["am2"].open()
        await carried_out
        self.assertEqual(len(await self.live("am2")), 1)

    async def undo_round(self, when: float) -> list[UndoEntry]:
        """Let the retry loop run its round at C{when}; fire with the undos still pending."""
        ended = self.rounds.next("round")
        self.advance_to(when)
        await ended
        return self.sm.manager.undo.pending

    async def rounds_until_confirmed(self, first_round_done: bool = False) -> None:
        """
        The late booking is deleted in the first round; two rounds that
        find nothing, one retry interval apart, confirm the undo.
        """
        retry = SETTINGS.undo_retry
        if not first_round_done:
            pending = await self.undo_round(self.sm_started + retry)
            self.assertEqual([e.last for e in pending], ["deleted 1 sliver(s) its late Allocate made"])
        self.assertEqual(await self.live("am2"), [])
        start = self.sm_started + (0 if first_round_done else retry)
        pending = await self.undo_round(start + retry)
        self.assertEqual(len(pending), 1)
        self.assertEqual(await self.undo_round(start + 2 * retry), [])
        self.assertEqual(UndoJournal(self.fed.sm_data_dir / JOURNAL_NAME).load(), [])
        self.assertEqual(self.gates["am2"].carried_out.count("Delete"), 1)
        self.assertEqual(await self.live("am1"), [])
        self.assertEqual(await self.live("am2"), [])

    async def test_no_orphan_once_it_resumes(self) -> None:
        """
        am2 hangs during the Allocate: the caller hears TIMEDOUT only after
        am1's booking is gone; am2 later carries the Allocate out, and once
        its circuit closes the slice manager finds and deletes that booking.
        """
        await self.hang_allocate()
        await self.resume_am2()
        record = self.sm.manager.records[1]
        self.assertEqual(record.breaker.state, BreakerState.OPEN)
        probe = self.sm.manager.health.next_probe_at(record)
        assert probe is not None
        answered = self.replies.next((self.url("am2"), "GetVersion"))
        self.advance_to(probe)
        await answered
        self.assertEqual(record.breaker.state, BreakerState.CLOSED)
        await self.rounds_until_confirmed()

    async def test_no_orphan_after_restart_mid_undo(self) -> None:
        """
        The slice manager stops while am2's undo is pending; am2 then
        carries the Allocate out. A new slice manager on the same data
        folder resumes the undo from its journal and deletes the booking.
        """
        await self.hang_allocate()
        await self.sm.stopService()
        journal = UndoJournal(self.fed.sm_data_dir / JOURNAL_NAME)
        self.assertEqual([(e.peer_name, e.slivers) for e in journal.load()], [(self.urns[1], None)])
        await self.resume_am2()
        again = self.build_sm()
        self.assertEqual([e.peer_name for e in again.manager.undo.pending], [self.urns[1]])
        first_round = self.rounds.next("round")
        await self.run_sm(again)
        await first_round
        self.assertEqual([e.last for e in again.manager.undo.pending], ["deleted 1 sliver(s) its late Allocate made"])
        await self.rounds_until_confirmed(first_round_done=True)


class LateAggregateTests(FaultHarness):
    """An aggregate that was down when the slice manager started is learned on demand."""

    async def test_first_allocate_naming_it_succeeds(self) -> None:
        """
        The slice manager, told only URLs, starts while am2 is down; am2
        starts; the first Allocate naming it learns its URN and books both.
        """
        await self.start(sm_knows_urns=False, with_sm=False)
        await self.fed.stop_aggregate("am2")
        sm = await self.run_sm(self.build_sm())
        self.assertEqual([r.known for r in sm.manager.records], [True, False])
        await self.fed.start_aggregate("am2")
        struct = await self.client().allocate(self.slice_urn, self.request())
        value = value_of(struct)
        self.assertEqual(len(value["geni_slivers"]), 2)
        self.assertEqual([(s["name"], s["status"]) for s in struct["geniam_statistics"]["aggregates"]], [(u, "success") for u in self.urns])
        for name in NAMES[:2]:
            self.assertEqual(len(await self.live(name)), 1, name)


class PartialReadTests(FaultHarness):
    """Reads answer with what the reachable aggregates said."""

    def assertPartial(self, struct: dict[str, Any], missing: str, code: GeniCode) -> None:
        self.assertEqual(struct["code"]["geni_code"], GeniCode.SUCCESS, struct.get("output"))
        self.assertIn(missing, struct["output"])
        statistics = struct["geniam_statistics"]
        self.assertEqual(statistics["unreachable"], [missing])
        codes = {s["name"]: (s["status"], s.get("code")) for s in statistics["aggregates"]}
        self.assertEqual(codes[missing][1], int(code), statistics)
        self.assertEqual([status for name, (status, _) in codes.items() if name != missing], ["success"])

    async def test_stopped_aggregate(self) -> None:
        """
        With am2 stopped after both islands were booked, Status, Describe
        and ListResources succeed with am1's answer, name am2 and keep its
        code (RPCERROR: it refuses connections).
        """
        await self.start()
        client = self.client()
        value_of(await client.allocate(self.slice_urn, self.request()))
        await self.fed.stop_aggregate("am2")
        am1, am2 = self.urns
        for struct in (await client.status([self.slice_urn]), await client.describe([self.slice_urn])):
            self.assertPartial(struct, am2, GeniCode.RPCERROR)
            self.assertEqual([s["geni_sliver_urn"].split("+")[1] for s in struct["value"]["geni_slivers"]], ["geniam:demo:am1"])
        described = (await client.describe([self.slice_urn]))["value"]["geni_rspec"]
        self.assertEqual({i[2] for i in identities(described) if i[2]}, {am1})
        listed = await client.list_resources(cached=False)
        self.assertPartial(listed, am2, GeniCode.RPCERROR)
        self.assertEqual({s["name"]: s["status"] for s in read_statistics(listed["value"])}, {am1: "success", am2: "error"})
        self.assertIn(am1, listed["value"])

    async def test_hung_aggregate(self) -> None:
        """
        With am2 hanging, Status answers after hung_after plus
        probe_timeout (not the peer timeout) with am1's slivers; am2 is
        named as timed out and its circuit is open.
        """
        await self.start()
        client = self.client()
        value_of(await client.allocate(self.slice_urn, self.request()))
        gate = self.gates["am2"]
        gate.close()
        am1_answered = self.replies.next((self.url("am1"), "Status"))
        held = gate.held("Status")
        answer = client.status([self.slice_urn])
        await held
        await am1_answered
        probed = gate.held("GetVersion")
        self.clock.advance(SETTINGS.hung_after)
        await probed
        self.assertNoResult(answer)
        self.clock.advance(SETTINGS.probe_timeout)
        struct = await answer
        self.assertPartial(struct, self.urns[1], GeniCode.TIMEDOUT)
        self.assertEqual(len(struct["value"]["geni_slivers"]), 1)
        elapsed = {s["name"]: s["elapsed"] for s in struct["geniam_statistics"]["aggregates"]}
        self.assertEqual(elapsed[self.urns[1]], SETTINGS.hung_after + SETTINGS.probe_timeout)
        self.assertEqual(self.sm.manager.records[1].breaker.state, BreakerState.OPEN)
