"""
Tests for L{geniam.managers.slice}: the slice manager's fan-out, merges,
routing, splitting, loop prevention and statistics, with in-memory
aggregates on a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from geniam.errors import GeniCode, GeniError
from geniam.managers.breaker import BreakerState
from geniam.trust.forwarding import SPEAKS_FOR, Forwarding
from geniam.rspec.merge import AggregateOutcome, merge_advertisements, read_statistics
from geniam.rspec.parser import parse_rspec
from geniam.timeutil import parse_time
from geniam.rspec.compression import decompress_rspec
from tests.managers.slice_support import (
    ALICE,
    GENI_V3,
    SLICE,
    SM_URL,
    SM_URN,
    Caller,
    FakeAggregate,
    SliceManagerCase,
    called_by,
    am_urn,
    make_sm,
    request,
    run,
)


class Base(SliceManagerCase):
    """Three aggregates, answering after one second, behind a slice manager."""

    def ask(self, caller: Any = None, **options: Any) -> Deferred[Any]:
        options.setdefault("cached", False)
        return run(self.sm.ListResources(self.called_by(caller or self.alice, ["cred"]), {"geni_rspec_version": GENI_V3, **options}))

    def done(self, d: Deferred[Any], seconds: float = 1.0) -> Any:
        self.clock.advance(seconds)
        return self.successResultOf(d)

    def allocate_everywhere(self) -> dict[str, Any]:
        return self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request(*self.names), {})))  # type: ignore[no-any-return]

    def stats(self, struct: dict[str, Any]) -> dict[str, dict[str, Any]]:
        return {s["name"]: s for s in struct["geniam_statistics"]["aggregates"]}


class GetVersionTests(Base):
    """GetVersion describes the slice manager."""

    def test_describes_the_slice_manager(self) -> None:
        """interface slicemgr, peers URN to URL, geni_many, no single allocation, credential types."""
        struct = self.successResultOf(run(self.sm.GetVersion(self.called_by(self.alice))))
        value = struct["value"]
        self.assertEqual((struct["geni_api"], value["geni_api"]), (3, 3))
        self.assertEqual(value["interface"], "slicemgr")
        self.assertEqual(value["urn"], SM_URN)
        self.assertEqual(value["geni_api_versions"], {"3": SM_URL})
        self.assertEqual(value["peers"], {a.urn: a.url for a in self.ams})
        self.assertEqual((value["geni_allocate"], value["geni_single_allocation"]), ("geni_many", 0))
        self.assertIn({"geni_type": "geni_sfa", "geni_version": "3"}, value["geni_credential_types"])
        self.assertEqual(value["geni_ad_rspec_versions"][0]["type"], "GENI")
        self.assertEqual([p["state"] for p in value["geniam_peers"]], ["closed"] * 3)
        self.assertEqual(sum(a.methods().count("GetVersion") for a in self.ams), 3)

    def test_peer_urns_learned_from_get_version(self) -> None:
        """Peers' URNs come from their GetVersion."""
        self.assertEqual([r.urn for r in self.sm.records], [a.urn for a in self.ams])


class FanOutTests(Base):
    """Every call goes to all aggregates at once; slow, dead and hanging ones are reported."""

    settings = {"peer_timeout": 10.0, "deadline": 20.0}

    def test_all_at_once_and_merged(self) -> None:
        """ListResources reaches every aggregate before any answers, and merges the three advertisements."""
        d = self.ask()
        self.assertEqual([a.methods().count("ListResources") for a in self.ams], [1, 1, 1])
        struct = self.done(d)
        for name in self.names:
            self.assertIn(f"urn:publicid:IDN+{name}.example+node+n1", struct["value"])
        stats = read_statistics(struct["value"])
        self.assertEqual([(s["name"], s["status"], s["call"]) for s in stats], [(a.urn, "success", "ListResources") for a in self.ams])
        self.assertEqual(self.ams[0].last("ListResources").params[0], ["sm-credential"])

    def test_slow_dead_and_hanging(self) -> None:
        """A slow aggregate is waited for, a dead one fails at once, a hanging one is cancelled at its timeout."""
        slow, dead, hanging = self.ams
        slow.delay = 8.0
        dead.mode = "dead"
        hanging.mode = "hang"
        d = self.ask()
        self.clock.pump([8, 1.9])
        self.assertNoResult(d)
        struct = self.done(d, 0.1)
        stats = {s["name"]: s for s in read_statistics(struct["value"])}
        self.assertEqual((stats[slow.urn]["status"], stats[slow.urn]["elapsed"]), ("success", "8.000"))
        self.assertEqual((stats[dead.urn]["status"], stats[dead.urn]["code"]), ("error", str(int(GeniCode.RPCERROR))))
        self.assertIn("Connection refused", stats[dead.urn]["exception"])
        self.assertEqual((stats[hanging.urn]["status"], stats[hanging.urn]["code"]), ("timeout", "8"))
        self.assertEqual(hanging.cancelled, 1)
        self.assertIn("am1.example+node+n1", struct["value"])
        self.assertNotIn("Traceback", struct["value"])

    def test_deadline_returns_what_it_has(self) -> None:
        """
        When the overall deadline passes first, the call answers with what
        it has: Status is a read, so it succeeds and names the aggregate
        that did not answer.
        """
        self.sm.fanout.peer_timeout = 100.0
        self.ams[2].mode = "hang"
        self.ams[0].slivers[SLICE] = [{"geni_sliver_urn": "urn:publicid:IDN+am1.example+sliver+x"}]
        d = run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {}))
        self.clock.advance(19.9)
        self.assertNoResult(d)
        struct = self.done(d, 0.1)
        stats = self.stats(struct)
        self.assertEqual(stats[self.ams[2].urn]["status"], "timeout")
        self.assertEqual(stats[self.ams[2].urn]["elapsed"], 20.0)
        self.assertEqual(struct["code"]["geni_code"], GeniCode.SUCCESS)
        self.assertIn(self.ams[2].urn, struct["output"])
        self.assertEqual(struct["geniam_statistics"]["unreachable"], [self.ams[2].urn])
        self.assertEqual([s["geni_sliver_urn"] for s in struct["value"]["geni_slivers"]], ["urn:publicid:IDN+am1.example+sliver+x"])
        self.assertEqual(self.ams[2].cancelled, 1)

    def test_unknown_peer_code(self) -> None:
        """A code outside the GENI table, from every aggregate, fails the call as a generic ERROR."""
        for aggregate in self.ams:
            aggregate.mode = "error"
            aggregate.error_code = 99  # type: ignore[assignment]
        d = self.ask()
        self.clock.advance(1)
        failure = self.failureResultOf(d, GeniError)
        self.assertEqual(failure.value.code, GeniCode.ERROR)
        self.assertIn("am1 says no", failure.value.output)

    def test_all_failed_listing_is_an_error(self) -> None:
        """When no aggregate lists its resources, ListResources fails with the reasons."""
        for aggregate in self.ams:
            aggregate.mode = "dead"
        failure = self.failureResultOf(self.ask(), GeniError)
        self.assertEqual(failure.value.code, GeniCode.RPCERROR)
        self.assertIn("3 of 3 aggregates failed", failure.value.output)
        self.assertEqual(len(self.sm.cache), 0)

    def test_breaker_opens_and_closes(self) -> None:
        """
        A dead aggregate is skipped once its circuit opens; it is probed in
        the background, and the first answered probe closes the circuit.
        """
        dead = self.ams[1]
        dead.mode = "dead"
        for _ in range(5):
            self.done(self.ask())
        record = self.sm.records[1]
        self.assertEqual(record.breaker.state, BreakerState.OPEN)
        struct = self.done(self.ask())
        self.assertEqual(dead.methods().count("ListResources"), 5)
        stats = {s["name"]: s for s in read_statistics(struct["value"])}
        self.assertEqual(stats[dead.urn]["code"], str(int(GeniCode.UNAVAILABLE)))
        self.assertIn("circuit open", stats[dead.urn]["exception"])
        self.assertIn("probed in the background", stats[dead.urn]["exception"])
        self.clock.advance(30)
        self.assertEqual(record.breaker.state, BreakerState.OPEN)
        dead.mode = "normal"
        next_probe = self.sm.health.next_probe_at(record)
        assert next_probe is not None
        self.clock.advance(next_probe - self.clock.seconds())
        self.assertEqual(record.breaker.state, BreakerState.OPEN)
        self.clock.advance(1.0)
        self.assertEqual(record.breaker.state, BreakerState.CLOSED)
        struct = self.done(self.ask())
        self.assertEqual(dead.methods().count("ListResources"), 6)

    def test_hanging_peer_stops_costing_time_once_open(self) -> None:
        """Once a hanging aggregate's circuit is open, calls answer without waiting for it."""
        self.ams[2].mode = "hang"
        for _ in range(5):
            self.done(self.ask(), 10)
        d = self.ask()
        self.clock.advance(1)
        self.successResultOf(d)


class MergeTests(Base):
    """Each method's result is merged as SFA's slice manager merges it."""

    def test_answers_checked_while_slower_peers_are_awaited(self) -> None:
        """
        Each RSpec is checked as it arrives; once every peer has answered,
        the merged advertisement is what the tree merge makes of them, and
        a repeat parses nothing again.
        """
        self.ams[2].delay = 3.0
        d = self.ask()
        self.clock.advance(1)
        self.assertNoResult(d)
        self.assertEqual(self.sm.answers.checks, 2)
        struct = self.done(d, 2)
        self.assertEqual(self.sm.answers.checks, 3)
        outcomes = [
            AggregateOutcome(a.urn, s["elapsed"], rspec=a._ListResources([], {})["value"])
            for a, s in zip(self.ams, struct["geniam_statistics"]["aggregates"])
        ]
        generated = parse_rspec(struct["value"], "advertisement").get("generated")
        self.assertEqual(
            struct["value"], merge_advertisements(outcomes, "ListResources", parse_time(generated))
        )
        self.done(self.ask(), 3)
        self.assertEqual(self.sm.answers.checks, 3)

    def test_allocate_splits_the_request(self) -> None:
        """Each aggregate receives only its own part of the request."""
        struct = self.allocate_everywhere()
        for aggregate in self.ams:
            part = aggregate.last("Allocate").params[2]
            self.assertIn(f'client_id="{aggregate.name}"', part)
            self.assertEqual(part.count("<node"), 1)
        self.assertEqual(struct["code"]["geni_code"], 0)
        value = struct["value"]
        self.assertEqual(value["geni_urn"], SLICE)
        self.assertEqual(len(value["geni_slivers"]), 3)
        stats = read_statistics(value["geni_rspec"])
        self.assertEqual({s["call"] for s in stats}, {"Allocate"})
        self.assertEqual(value["geni_rspec"].count("sliver_id="), 3)

    def test_allocate_only_concerned_aggregates(self) -> None:
        """Aggregates the request does not name are not called."""
        self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request("am2"), {})))
        self.assertEqual([a.methods().count("Allocate") for a in self.ams], [0, 1, 0])

    def test_allocate_unknown_aggregate(self) -> None:
        """Request elements for an aggregate the slice manager does not know are a clear BADARGS, before any call."""
        d = run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request("am1", "elsewhere"), {}))
        failure = self.failureResultOf(d, GeniError)
        self.assertEqual(failure.value.code, GeniCode.BADARGS)
        self.assertIn(am_urn("elsewhere"), failure.value.output)
        self.assertIn("Known aggregates", failure.value.output)
        self.assertEqual(sum(a.methods().count("Allocate") for a in self.ams), 0)

    def test_allocate_strips_statistics(self) -> None:
        """A <statistics> element in the request is not forwarded."""
        rspec = request("am1").replace("</rspec>", '<statistics call="ListResources"/></rspec>')
        self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, rspec, {})))
        self.assertNotIn("statistics", self.ams[0].last("Allocate").params[2])

    def test_allocate_partial_failure_is_released(self) -> None:
        """
        When one part fails, the slivers the others allocated are deleted
        before the call answers, and the call fails saying so.
        """
        self.ams[1].mode = "error"
        d = run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request(*self.names), {}))
        self.clock.advance(1)
        self.assertNoResult(d)
        self.assertEqual(self.ams[0].methods()[-1], "Delete")
        struct = self.done(d)
        self.assertEqual(struct["code"]["geni_code"], GeniCode.BUSY)
        self.assertIn("am2 says no", struct["output"])
        self.assertIn(f"undone at {self.ams[0].urn}, {self.ams[2].urn}", struct["output"])
        self.assertEqual(struct["geniam_undo"], {"done": [self.ams[0].urn, self.ams[2].urn], "pending": []})
        self.assertEqual(struct["value"]["geni_slivers"], [])
        for aggregate in (self.ams[0], self.ams[2]):
            self.assertEqual(aggregate.methods()[-1], "Delete")
            self.assertEqual(aggregate.slivers[SLICE], [])
            self.assertEqual(aggregate.last("Delete").options["call_id"], "generated-0-undo-1")
        self.assertEqual(self.sm.undo.pending, [])
        statuses = {s["name"]: s["status"] for s in struct["geniam_statistics"]["aggregates"]}
        self.assertEqual(set(statuses.values()), {"error"})

    def test_allocate_best_effort_keeps_parts(self) -> None:
        """With geni_best_effort the parts that succeeded are kept."""
        self.ams[1].mode = "error"
        struct = self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request(*self.names), {"geni_best_effort": True})))
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertIn("1 of 3 aggregates failed", struct["output"])
        self.assertEqual(len(struct["value"]["geni_slivers"]), 2)
        self.assertNotIn("Delete", self.ams[0].methods())

    def test_describe_merges_manifests(self) -> None:
        """Describe of a slice: one manifest, geni_urn kept, slivers concatenated; aggregates without slivers add nothing."""
        self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request("am1", "am3"), {})))
        d = run(self.sm.Describe(self.called_by(self.alice, ["cred"]), [SLICE], {"geni_rspec_version": GENI_V3, "geni_compressed": True}))
        struct = self.done(d)
        value = struct["value"]
        self.assertEqual(value["geni_urn"], SLICE)
        self.assertEqual([s["geni_sliver_urn"].split("+")[1] for s in value["geni_slivers"]], ["am1.example", "am3.example"])
        manifest = decompress_rspec(value["geni_rspec"])
        self.assertEqual(manifest.count("sliver_id="), 2)
        self.assertEqual([s["status"] for s in read_statistics(manifest)], ["success"] * 3)
        self.assertNotIn("geni_compressed", self.ams[0].last("Describe").options)

    def test_status_and_renew_roll_up(self) -> None:
        """Renew joins the sliver lists; a failing aggregate sets the code and is named in the output."""
        self.allocate_everywhere()
        self.ams[2].mode = "error"
        self.ams[2].error_code = GeniCode.OUTOFRANGE
        struct = self.done(run(self.sm.Renew(self.called_by(self.alice, ["cred"]), [SLICE], "2031-01-01T00:00:00Z", {})))
        self.assertEqual(struct["code"]["geni_code"], GeniCode.OUTOFRANGE)
        self.assertIn(f"{am_urn('am3')}: OUTOFRANGE am3 says no", struct["output"])
        self.assertEqual([s["geni_expires"] for s in struct["value"]], ["2031-01-01T00:00:00Z"] * 2)
        self.assertEqual(self.ams[0].last("Renew").params[2], "2031-01-01T00:00:00Z")
        self.ams[2].mode = "normal"
        status = self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        self.assertEqual(status["code"]["geni_code"], 0)
        self.assertEqual(status["value"]["geni_urn"], SLICE)
        self.assertEqual(len(status["value"]["geni_slivers"]), 3)

    def test_renew_best_effort(self) -> None:
        """With geni_best_effort a failing aggregate does not fail the call."""
        self.allocate_everywhere()
        self.ams[0].mode = "dead"
        struct = self.done(run(self.sm.Renew(self.called_by(self.alice, ["cred"]), [SLICE], "2031-01-01T00:00:00Z", {"geni_best_effort": True})))
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(len(struct["value"]), 2)
        self.assertIn("1 of 3 aggregates failed", struct["output"])

    def test_whole_slice_without_slivers_somewhere(self) -> None:
        """Aggregates answering SEARCHFAILED for a slice hold nothing of it and do not fail the call."""
        self.done(run(self.sm.Allocate(self.called_by(self.alice, ["cred"]), SLICE, request("am2"), {})))
        struct = self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertEqual(len(struct["value"]["geni_slivers"]), 1)

    def test_unknown_slice_everywhere(self) -> None:
        """When every aggregate says SEARCHFAILED, so does the slice manager."""
        struct = self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        self.assertEqual(struct["code"]["geni_code"], GeniCode.SEARCHFAILED)

    def test_delete_joins_lists(self) -> None:
        """Delete's lists are joined."""
        self.allocate_everywhere()
        struct = self.done(run(self.sm.Delete(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        self.assertEqual(struct["code"]["geni_code"], 0)
        self.assertEqual([s["geni_allocation_status"] for s in struct["value"]], ["geni_unallocated"] * 3)

    def test_provision_and_action(self) -> None:
        """Provision merges manifests; PerformOperationalAction joins the sliver lists."""
        self.allocate_everywhere()
        struct = self.done(run(self.sm.Provision(self.called_by(self.alice, ["cred"]), [SLICE], {"geni_rspec_version": GENI_V3})))
        self.assertEqual([s["geni_allocation_status"] for s in struct["value"]["geni_slivers"]], ["geni_provisioned"] * 3)
        self.assertEqual({s["call"] for s in read_statistics(struct["value"]["geni_rspec"])}, {"Provision"})
        struct = self.done(run(self.sm.PerformOperationalAction(self.called_by(self.alice, ["cred"]), [SLICE], "geni_start", {})))
        self.assertEqual([s["geni_operational_status"] for s in struct["value"]], ["geni_ready"] * 3)
        self.assertEqual(self.ams[1].last("PerformOperationalAction").params[2], "geni_start")

    def test_shutdown(self) -> None:
        """Shutdown goes to every aggregate and is true when all shut down."""
        struct = self.done(run(self.sm.Shutdown(self.called_by(self.alice, ["cred"]), SLICE, {})))
        self.assertIs(struct["value"], True)
        self.assertEqual([a.methods().count("Shutdown") for a in self.ams], [1, 1, 1])
        self.ams[0].mode = "dead"
        struct = self.done(run(self.sm.Shutdown(self.called_by(self.alice, ["cred"]), SLICE, {})))
        self.assertIs(struct["value"], False)
        self.assertNotEqual(struct["code"]["geni_code"], 0)

    def test_malformed_reply_is_reported(self) -> None:
        """A success whose value has the wrong shape counts as that aggregate's error."""
        self.ams[0]._Status = lambda *args: {"code": {"geni_code": 0}, "value": "oops"}  # type: ignore[method-assign]
        self.allocate_everywhere()
        struct = self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        self.assertEqual(self.stats(struct)[am_urn("am1")]["status"], "error")
        self.assertIn("malformed reply", struct["output"])

    def test_statistics_member(self) -> None:
        """Non-RSpec results carry geniam_statistics with one entry per aggregate."""
        self.allocate_everywhere()
        struct = self.done(run(self.sm.Delete(self.called_by(self.alice, ["cred"]), [SLICE], {})))
        statistics = struct["geniam_statistics"]
        self.assertEqual(statistics["call"], "Delete")
        self.assertEqual([(s["name"], s["url"], s["status"], s["elapsed"]) for s in statistics["aggregates"]],
                         [(a.urn, a.url, "success", 1.0) for a in self.ams])


class RoutingTests(Base):
    """Sliver calls go to the aggregate whose authority minted the slivers."""

    def test_slivers_go_to_their_aggregate(self) -> None:
        """Status of am2's slivers is sent to am2 only, with only those URNs."""
        allocated = self.allocate_everywhere()["value"]["geni_slivers"]
        am2_sliver = [s["geni_sliver_urn"] for s in allocated if "am2.example" in s["geni_sliver_urn"]]
        struct = self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), am2_sliver, {})))
        self.assertEqual([a.methods().count("Status") for a in self.ams], [0, 1, 0])
        self.assertEqual(self.ams[1].last("Status").params[0], am2_sliver)
        self.assertEqual([s["name"] for s in struct["geniam_statistics"]["aggregates"]], [am_urn("am2")])

    def test_slivers_of_two_aggregates(self) -> None:
        """Slivers of two aggregates are split between them."""
        allocated = [s["geni_sliver_urn"] for s in self.allocate_everywhere()["value"]["geni_slivers"]]
        self.done(run(self.sm.Delete(self.called_by(self.alice, ["cred"]), [allocated[2], allocated[0]], {})))
        self.assertEqual(self.ams[0].last("Delete").params[0], [allocated[0]])
        self.assertEqual(self.ams[2].last("Delete").params[0], [allocated[2]])
        self.assertNotIn("Delete", self.ams[1].methods())

    def test_unknown_authority(self) -> None:
        """A sliver no aggregate minted is SEARCHFAILED, and nothing is called."""
        d = run(self.sm.Status(self.called_by(self.alice, ["cred"]), ["urn:publicid:IDN+nowhere.example+sliver+s1"], {}))
        failure = self.failureResultOf(d, GeniError)
        self.assertEqual(failure.value.code, GeniCode.SEARCHFAILED)
        self.assertIn("nowhere.example", failure.value.output)
        self.assertEqual(sum(a.methods().count("Status") for a in self.ams), 0)

    def test_list_resources_is_not_describe(self) -> None:
        """ListResources refuses the v2 option geni_slice_urn and needs geni_rspec_version."""
        d = run(self.sm.ListResources(self.called_by(self.alice, ["cred"]), {"geni_rspec_version": GENI_V3, "geni_slice_urn": SLICE}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)
        d = run(self.sm.ListResources(self.called_by(self.alice, ["cred"]), {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)
        d = run(self.sm.ListResources(self.called_by(self.alice, ["cred"]), {"geni_rspec_version": {"type": "ProtoGENI", "version": "2"}}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADVERSION)

    def test_bad_expiration_time(self) -> None:
        """A Renew time that is not RFC 3339 is BADARGS before any aggregate is called."""
        d = run(self.sm.Renew(self.called_by(self.alice, ["cred"]), [SLICE], "tomorrow", {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)
        self.assertEqual(sum(a.methods().count("Renew") for a in self.ams), 0)

    def test_bad_action(self) -> None:
        """An empty action is BADARGS."""
        d = run(self.sm.PerformOperationalAction(self.called_by(self.alice, ["cred"]), [SLICE], "", {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)

    def test_bad_urns(self) -> None:
        """Malformed urns are BADARGS."""
        d = run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE, "urn:publicid:IDN+am1.example+sliver+s1"], {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)
        d = run(self.sm.Describe(self.called_by(self.alice, ["cred"]), [SLICE], {}))
        self.assertEqual(self.failureResultOf(d, GeniError).value.code, GeniCode.BADARGS)


class LoopPreventionTests(Base):
    """Never forward a call back to the aggregate or slice manager that made it."""

    def test_caller_peer_is_left_out(self) -> None:
        """A call from am1 goes to am2 and am3 only."""
        caller = Caller(am_urn("am1"))
        struct = self.done(run(self.sm.Shutdown(self.called_by(caller, ["cred"]), SLICE, {})))
        self.assertEqual([a.methods().count("Shutdown") for a in self.ams], [0, 1, 1])
        self.assertNotIn(am_urn("am1"), self.stats(struct))

    def test_urn_comparison_ignores_case(self) -> None:
        """The caller's URN is compared the GENI way (authority case-insensitive)."""
        caller = Caller(am_urn("AM2").replace("AM2.example", "Am2.Example"))
        self.done(run(self.sm.Shutdown(self.called_by(caller, ["cred"]), SLICE, {})))
        self.assertEqual(self.ams[1].methods().count("Shutdown"), 0)

    def test_never_to_itself(self) -> None:
        """A peer that turns out to be this slice manager is never called."""
        clock = Clock()
        me = FakeAggregate("sm", clock, urn=SM_URN)
        other = FakeAggregate("am1", clock)
        sm, _ = make_sm([me, other], clock)
        self.successResultOf(run(sm.Shutdown(called_by(self.alice, ["cred"]), SLICE, {})))
        self.assertEqual((me.methods().count("Shutdown"), other.methods().count("Shutdown")), (0, 1))

    def test_slivers_of_the_caller_are_not_sent_back(self) -> None:
        """Slivers minted by the calling aggregate are not routed back to it."""
        d = run(self.sm.Status(self.called_by(Caller(am_urn("am1")), ["cred"]), ["urn:publicid:IDN+am1.example+sliver+s1"], {}))
        failure = self.failureResultOf(d, GeniError)
        self.assertIn("not forwarded back", failure.value.output)

    def test_slice_manager_peer(self) -> None:
        """A peer slice manager (interface slicemgr) calling is left out too."""
        clock = Clock()
        peer_sm = FakeAggregate("sm2", clock, urn="urn:publicid:IDN+sm2.example+authority+sm")
        peer_sm.interface = "slicemgr"
        am1 = FakeAggregate("am1", clock)
        sm, _ = make_sm([peer_sm, am1], clock)
        self.assertTrue(sm.records[0].is_slice_manager)
        self.successResultOf(run(sm.Status(called_by(Caller(peer_sm.urn), ["cred"]), [SLICE], {})))
        self.assertEqual((peer_sm.methods().count("Status"), am1.methods().count("Status")), (0, 1))


class PeerLearningTests(SynchronousTestCase):
    """Peers are called only once their URN is known."""

    def test_unreachable_peer_reported_then_learned(self) -> None:
        """A peer that failed GetVersion is reported as not called, and learned in the background later."""
        clock = Clock()
        am1, am2 = FakeAggregate("am1", clock), FakeAggregate("am2", clock)
        am2.mode = "dead"
        sm, _ = make_sm([am1, am2], clock)
        self.assertFalse(sm.records[1].known)
        am2.mode = "normal"
        struct = self.successResultOf(run(sm.Shutdown(called_by(Caller(ALICE), ["cred"]), SLICE, {})))
        stats = {s["url"]: s for s in struct["geniam_statistics"]["aggregates"]}
        self.assertIn("its URN is unknown", stats[am2.url]["exception"])
        self.assertNotIn("Shutdown", am2.methods())
        self.assertTrue(sm.records[1].known)
        self.successResultOf(run(sm.Shutdown(called_by(Caller(ALICE), ["cred"]), SLICE, {})))
        self.assertIn("Shutdown", am2.methods())

    def test_configured_urn(self) -> None:
        """A URN configured for a peer is used before GetVersion, and a GetVersion contradicting it is refused."""
        clock = Clock()
        am1 = FakeAggregate("am1", clock)
        from geniam.managers.slice import SliceManager, SliceManagerInfo

        sm = SliceManager([am1], clock, SliceManagerInfo(SM_URN, SM_URL), peer_urns={am1.url: am_urn("other")})
        self.assertEqual(sm.records[0].urn, am_urn("other"))
        self.successResultOf(sm.start())
        self.assertIn("configured as", sm.records[0].version_error.output)  # type: ignore[union-attr]

    def test_not_v3(self) -> None:
        """A peer whose GetVersion says AM API v2 is not used, and the reason names its v3 URL."""
        clock = Clock()
        am1 = FakeAggregate("am1", clock)
        am1._GetVersion = lambda options: {  # type: ignore[method-assign]
            "code": {"geni_code": 0},
            "value": {"geni_api": 2, "geni_api_versions": {"3": "https://am1.example/am/3.0"}},
        }
        sm, _ = make_sm([am1], clock)
        self.assertFalse(sm.records[0].known)
        self.assertIn("https://am1.example/am/3.0", sm.records[0].version_error.output)  # type: ignore[union-attr]


class CredentialTests(Base):
    """What the forwarder decides is what the aggregates get."""

    def test_refusal_before_any_call(self) -> None:
        """A FORBIDDEN from the forwarder is the answer, and no aggregate is called."""
        self.forwarder.refuse = GeniError(GeniCode.FORBIDDEN, "delegate your slice credential to the slice manager")
        failure = self.failureResultOf(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {})), GeniError)
        self.assertEqual(failure.value.code, GeniCode.FORBIDDEN)
        self.failureResultOf(self.ask(), GeniError)
        self.assertEqual(sum(len(a.calls) - 1 for a in self.ams), 0)

    def test_speaks_for_option_forwarded(self) -> None:
        """A speaks-for forwarding sends geni_speaking_for with the user's URN."""

        async def speaks_for(caller: Any, credentials: Any, method: str, slice_urn: Any, options: Any) -> Forwarding:
            return Forwarding(("sf", "slice"), SPEAKS_FOR, slice_urn, ALICE)

        self.forwarder.for_slice = speaks_for  # type: ignore[method-assign]
        self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), [SLICE], {"geni_speaking_for": "someone"})))
        call = self.ams[0].last("Status")
        self.assertEqual(call.params[1], ["sf", "slice"])
        self.assertEqual(call.options["geni_speaking_for"], ALICE)

    def test_sliver_calls_ask_with_no_slice(self) -> None:
        """For sliver URNs the forwarder is asked without a slice (it takes it from the credentials)."""
        seen = []

        async def record(caller: Any, credentials: Any, method: str, slice_urn: Any, options: Any) -> Forwarding:
            seen.append(slice_urn)
            return Forwarding(tuple(credentials), "delegation", SLICE)

        self.forwarder.for_slice = record  # type: ignore[method-assign]
        self.done(run(self.sm.Status(self.called_by(self.alice, ["cred"]), ["urn:publicid:IDN+am1.example+sliver+s9"], {})))
        self.assertEqual(seen, [None])
