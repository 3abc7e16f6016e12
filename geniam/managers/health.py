# -*- test-case-name: tests.managers.test_slice_faults,tests.loopback.test_sm_faults -*-
"""
Finding hung peers early and noticing at once when they are back.

A peer that accepts connections and never answers costs every call the
whole peer timeout, and a circuit breaker that counts only calls that
ended opens late. L{PeerHealth} watches the calls in flight instead:

  - B{hung-peer detection}: when a peer's oldest call in flight has run
    for C{hung_after} seconds, the peer is asked GetVersion, which must
    answer within C{probe_timeout} (a connect and first-byte deadline far
    shorter than the peer timeout, since GetVersion does no work). No
    answer: the peer is hung, its breaker is tripped open, and every call
    in flight to it is cut short, so the calls waiting on it answer with
    what the other peers said. An answer: the peer is slow but alive, and
    its calls run on (checked again C{hung_after} later).
  - B{background probing}: while a peer's breaker is open, it is asked
    GetVersion after C{probe_interval} seconds, then at doubling
    intervals capped at C{probe_max_interval}; the first answer closes
    the breaker (and hands the version to C{on_alive}).

Every probe goes to the peer directly, not through its breaker. One timer
watches every peer: it fires when the next peer's check is due.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from geniam.managers.breaker import BreakerState
from geniam.managers.peers import PeerRecord

DEFAULT_HUNG_AFTER = 5.0
"""Default seconds a call may be in flight before its peer is checked."""

DEFAULT_PROBE_TIMEOUT = 5.0
"""Default seconds a probe's GetVersion may take (connect and first byte included)."""

DEFAULT_PROBE_INTERVAL = 5.0
"""Default seconds from a breaker opening to the first background probe."""

DEFAULT_PROBE_MAX_INTERVAL = 60.0
"""Default cap on the interval between background probes."""


@dataclass
class _InFlight:
    """The calls in flight to one peer, and when it is next checked."""

    due: float
    calls: dict[int, tuple[float, Deferred[Any]]] = field(default_factory=dict)
    checking: bool = False


@dataclass
class _Probing:
    """The background probing of one open peer."""

    interval: float
    timer: IDelayedCall | None = None


def answered(struct: Any) -> bool:
    """Whether a GetVersion reply says the peer is alive (a GENI struct with code 0)."""
    code = struct.get("code") if isinstance(struct, dict) else None
    return isinstance(code, dict) and code.get("geni_code") == 0


class PeerHealth:
    """
    Watches calls in flight and probes open peers.

    @ivar hung_after: seconds a call may be in flight before its peer is checked.
    @ivar probe_timeout: seconds a probe may take.
    @ivar probe_interval: the first interval between background probes.
    @ivar probe_max_interval: the cap on that interval.
    @ivar probes: probes sent so far.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        records: Sequence[PeerRecord],
        hung_after: float = DEFAULT_HUNG_AFTER,
        probe_timeout: float = DEFAULT_PROBE_TIMEOUT,
        probe_interval: float = DEFAULT_PROBE_INTERVAL,
        probe_max_interval: float = DEFAULT_PROBE_MAX_INTERVAL,
        on_alive: Callable[[PeerRecord, Any], None] | None = None,
    ) -> None:
        if min(hung_after, probe_timeout, probe_interval) <= 0 or probe_max_interval < probe_interval:
            raise ValueError("need positive hung_after, probe_timeout and 0 < probe_interval <= probe_max_interval")
        self._clock = clock
        self.hung_after = hung_after
        self.probe_timeout = probe_timeout
        self.probe_interval = probe_interval
        self.probe_max_interval = probe_max_interval
        self._on_alive = on_alive
        self.probes = 0
        self._in_flight: dict[int, tuple[PeerRecord, _InFlight]] = {}
        self._watch: IDelayedCall | None = None
        self._probing: dict[int, _Probing] = {}
        self._cut: set[int] = set()
        self._records = list(records)
        self._stopped = False
        for record in self._records:
            record.breaker.background_probing = True
            record.breaker.on_change(self._listener(record))

    def _listener(self, record: PeerRecord) -> Callable[[BreakerState], None]:
        def changed(state: BreakerState) -> None:
            self._breaker_changed(record, state)

        return changed

    # --- probes -----------------------------------------------------------

    def probe(self, record: PeerRecord) -> Deferred[Any]:
        """
        Ask C{record} GetVersion within the probe timeout.

        @return: a Deferred firing with the reply when the peer answered
            with success, else with C{None}; it never fails.
        """
        self.probes += 1
        d = record.peer.call("GetVersion", {})
        d.addTimeout(self.probe_timeout, self._clock)

        def judge(result: Any) -> Any:
            if isinstance(result, Failure):
                return None
            if not answered(result):
                return None
            if self._on_alive is not None:
                self._on_alive(record, result)
            return result

        return d.addBoth(judge)

    # --- calls in flight --------------------------------------------------

    def started(self, record: PeerRecord, call: Deferred[Any]) -> int:
        """
        A call to C{record} is in flight; cancelling C{call} cuts it short.

        @return: a token for L{ended} and L{was_cut}.
        """
        token = id(call)
        now = self._clock.seconds()
        entry = self._in_flight.get(id(record))
        if entry is None:
            watch = _InFlight(now + self.hung_after)
            self._in_flight[id(record)] = (record, watch)
            if not self._stopped:
                self._watch_by(watch.due)
        else:
            watch = entry[1]
        watch.calls[token] = (now, call)
        return token

    def ended(self, record: PeerRecord, token: int) -> None:
        """The call of C{token} is over."""
        entry = self._in_flight.get(id(record))
        if entry is None:
            return
        watch = entry[1]
        watch.calls.pop(token, None)
        if not watch.calls and not watch.checking:
            self._drop(id(record))

    def _drop(self, key: int) -> None:
        """Stop watching a peer with no call in flight (and the timer, when no peer is left)."""
        del self._in_flight[key]
        if not self._in_flight and self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def was_cut(self, token: int) -> bool:
        """Whether the call of C{token} was cut short because its peer was found hung (asked once)."""
        if token in self._cut:
            self._cut.discard(token)
            return True
        return False

    def in_flight(self, record: PeerRecord) -> int:
        """Calls in flight to C{record} now."""
        entry = self._in_flight.get(id(record))
        return len(entry[1].calls) if entry is not None else 0

    def _watch_by(self, due: float) -> None:
        """Have the one watch timer fire by C{due} at the latest."""
        if self._watch is not None:
            if self._watch.getTime() <= due:
                return
            self._watch.cancel()
        self._watch = self._clock.callLater(max(0.0, due - self._clock.seconds()), self._check_due)

    def _check_due(self) -> None:
        """Check every peer whose check is due; then wait for the next one due."""
        self._watch = None
        now = self._clock.seconds()
        for key, (record, watch) in list(self._in_flight.items()):
            if not watch.checking and watch.due <= now:
                self._check(key, record, watch, now)
        self._rearm()

    def _rearm(self) -> None:
        dues = [watch.due for _, watch in self._in_flight.values() if not watch.checking]
        if dues and not self._stopped:
            self._watch_by(min(dues))

    def _check(self, key: int, record: PeerRecord, watch: _InFlight, now: float) -> None:
        if not watch.calls:
            self._drop(key)
            return
        oldest = min(started for started, _ in watch.calls.values())
        age = now - oldest
        if age < self.hung_after:
            watch.due = oldest + self.hung_after
            return
        watch.checking = True
        count = len(watch.calls)
        self.probe(record).addCallback(self._checked, record, watch, count, age)

    def _checked(self, reply: Any, record: PeerRecord, watch: _InFlight, count: int, age: float) -> None:
        watch.checking = False
        current = self._in_flight.get(id(record))
        mine = current is not None and current[1] is watch
        if reply is not None:
            if mine and watch.calls and not self._stopped:
                watch.due = self._clock.seconds() + self.hung_after
                self._watch_by(watch.due)
            elif mine and not watch.calls:
                self._drop(id(record))
            return
        waited = age + self.probe_timeout
        record.breaker.trip(
            f"because it was found hung ({count} calls in flight for {waited:.1f} s, "
            f"no answer to GetVersion within {self.probe_timeout:g} s)"
        )
        for token, (_, call) in list(watch.calls.items()):
            self._cut.add(token)
            call.cancel()
        current = self._in_flight.get(id(record))
        if not watch.calls and current is not None and current[1] is watch:
            self._drop(id(record))

    # --- background probing -----------------------------------------------

    def _breaker_changed(self, record: PeerRecord, state: BreakerState) -> None:
        if state is BreakerState.OPEN:
            if id(record) not in self._probing and not self._stopped:
                probing = _Probing(self.probe_interval)
                self._probing[id(record)] = probing
                probing.timer = self._clock.callLater(probing.interval, self._background_probe, record, probing)
        elif state is BreakerState.CLOSED:
            stopped = self._probing.pop(id(record), None)
            if stopped is not None and stopped.timer is not None and stopped.timer.active():
                stopped.timer.cancel()

    def _background_probe(self, record: PeerRecord, probing: _Probing) -> None:
        probing.timer = None
        self.probe(record).addCallback(self._probed, record, probing)

    def _probed(self, reply: Any, record: PeerRecord, probing: _Probing) -> None:
        if self._probing.get(id(record)) is not probing:
            return
        if reply is not None:
            record.breaker.close("a background probe was answered")
            return
        probing.interval = min(probing.interval * 2, self.probe_max_interval)
        self.log.info(
            "{peer} is still not answering; next probe in {secs:g} s", peer=record.name, secs=probing.interval
        )
        if not self._stopped:
            probing.timer = self._clock.callLater(probing.interval, self._background_probe, record, probing)

    def next_probe_at(self, record: PeerRecord) -> float | None:
        """When the next background probe of C{record} is due, or C{None}."""
        probing = self._probing.get(id(record))
        if probing is None or probing.timer is None or not probing.timer.active():
            return None
        return float(probing.timer.getTime())

    def stop(self) -> None:
        """Cancel every timer; no more probes start."""
        self._stopped = True
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        for probing in self._probing.values():
            if probing.timer is not None and probing.timer.active():
                probing.timer.cancel()
            probing.timer = None
