# -*- test-case-name: tests.managers.test_slice_faults,tests.loopback.test_sm_faults -*-
"""
The reliable undo of a failed Allocate across aggregates.

When an all-or-nothing Allocate fails at one aggregate, what the others
did must be undone, and an aggregate that did not answer in time may
still carry the Allocate out later ("the client went away before its
reply"). The slice manager therefore writes down what it must undo, one
L{UndoEntry} per aggregate, and retries until each aggregate confirms:

  - B{known slivers} (the aggregate answered with success): Delete them;
    done when the Delete succeeds or the aggregate says they are gone
    (SEARCHFAILED);
  - B{unknown outcome} (the call timed out or its connection failed
    without an answer): Describe the slice there, and Delete the slivers
    this Allocate made: slivers still only allocated whose manifest
    element carries a C{client_id} of the part sent, or whose island slot
    is the slot the part asked for. Done after two checks that find
    nothing, at least C{settle} seconds apart (so an Allocate still being
    carried out when the aggregate answers again is caught by the second).

An entry is given up (and logged) after C{give_up} seconds; by then the
aggregate's own allocation expiry has released anything left.

The entries live in an L{UndoJournal}: a small JSON file in the slice
manager's data folder, rewritten atomically (temporary file, fsync,
rename) whenever an entry is opened, progresses or ends, and read back at
start, so pending undos resume after a restart. The file is written only
when an Allocate failed, never on the happy path, so a synchronous write
is cheap enough and needs no database or thread; it holds the forwarded
credentials, so it is created readable by its owner only.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from geniam.errors import GeniCode, GeniError
from geniam.managers.fanout import FanOut, PeerCall, PeerOutcome
from geniam.managers.peers import PeerRecord
from geniam.rspec import island
from geniam.rspec.parser import parse_rspec
from geniam.rspec.request import LINK, NODE

JOURNAL_NAME = "sm-undo.json"
"""The journal's file name in the slice manager's data folder."""

DEFAULT_UNDO_RETRY = 15.0
"""Default seconds between attempts at a pending undo."""

DEFAULT_UNDO_GIVE_UP = 172800.0
"""Default seconds after which a pending undo is given up (an aggregate's default allocation expiry)."""

GENI_V3 = {"type": "GENI", "version": "3"}


@dataclass
class UndoEntry:
    """
    What must be undone at one aggregate after a failed Allocate.

    @ivar call_id: the Allocate's C{call_id}.
    @ivar peer_url: the aggregate's URL.
    @ivar peer_name: its name for messages (URN when known).
    @ivar slice_urn: the slice.
    @ivar slivers: the slivers to Delete, or C{None} when unknown (the call got no answer).
    @ivar client_ids: the C{client_id}s of the part sent (to find late slivers).
    @ivar slots: the island slots the part asked for, C{[start, end]}.
    @ivar credentials: the credentials the Allocate was forwarded with.
    @ivar options: the options it was forwarded with.
    @ivar created: when the entry was opened.
    @ivar attempts: attempts made.
    @ivar clean_since: when a check first found nothing to delete, if the last one did.
    @ivar last: what the last attempt said.
    """

    call_id: str
    peer_url: str
    peer_name: str
    slice_urn: str
    slivers: list[str] | None
    client_ids: list[str] = field(default_factory=list)
    slots: list[list[float]] = field(default_factory=list)
    credentials: list[Any] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    attempts: int = 0
    clean_since: float | None = None
    last: str = "not tried yet"

    @property
    def key(self) -> tuple[str, str]:
        """Identifies the entry: C{(call_id, peer_url)}."""
        return (self.call_id, self.peer_url)


def part_marks(part: str) -> tuple[list[str], list[list[float]]]:
    """
    What identifies the slivers a request part makes: its nodes' and links'
    C{client_id}s and its island slots.

    @raise GeniError: BADARGS for a malformed part.
    """
    root = parse_rspec(part, "request")
    client_ids: list[str] = []
    slots: list[list[float]] = []
    for element in root:
        if element.tag in (NODE, LINK) and element.get("client_id"):
            client_ids.append(element.get("client_id", ""))
        elif element.tag == island.SLOT:
            start, end = island.read_slot(element)
            slots.append([start, end])
    return client_ids, slots


def late_slivers(value: Any, entry: UndoEntry) -> list[str]:
    """
    The slivers of a Describe C{value} that the Allocate of C{entry} made:
    still only allocated, and named by a C{client_id} or a slot of its part.
    """
    return slivers_of_part(value, entry.client_ids, entry.slots)


def slivers_of_part(
    value: Any, client_ids: Sequence[str], part_slots: Sequence[Sequence[float]], allocated_only: bool = True
) -> list[str]:
    """
    The slivers of a Describe C{value} named by one of C{client_ids} or
    whose island slot is one of C{part_slots} (see L{part_marks}); with
    C{allocated_only}, only those still allocated.
    """
    if not isinstance(value, dict):
        return []
    listed = {
        s["geni_sliver_urn"]
        for s in value.get("geni_slivers") or []
        if isinstance(s, dict) and isinstance(s.get("geni_sliver_urn"), str)
        and (not allocated_only or s.get("geni_allocation_status") == "geni_allocated")
    }
    if not listed:
        return []
    try:
        root = parse_rspec(value.get("geni_rspec") or "", "manifest")
    except GeniError:
        return []
    wanted_ids = set(client_ids)
    slots = {(float(s), float(e)) for s, e in part_slots}
    ours: list[str] = []
    for element in root:
        sliver = element.get("sliver_id")
        if sliver not in listed or sliver in ours or not isinstance(element.tag, str):
            continue
        if element.tag in (NODE, LINK) and element.get("client_id") in wanted_ids:
            ours.append(sliver)  # type: ignore[arg-type]
        elif element.tag == island.SLOT:
            try:
                if island.read_slot(element) in slots:
                    ours.append(sliver)  # type: ignore[arg-type]
            except GeniError:
                continue
    return ours


class UndoJournal:
    """
    The pending undos, in a JSON file (or only in memory when C{path} is C{None}).

    A relative C{path} is made absolute when the journal is made, so the
    file read at start is the one written later, whatever the working
    directory becomes meanwhile (C{twistd --rundir} changes it after the
    service is built).

    @ivar path: the file, absolute.
    """

    log = Logger()

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path).absolute() if path is not None else None

    def load(self) -> list[UndoEntry]:
        """The entries written last (none if there is no file; a damaged file is logged and set aside)."""
        if self.path is None or not self.path.exists():
            return []
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return [UndoEntry(**item) for item in data["entries"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            aside = self.path.with_suffix(".damaged")
            self.log.error("undo journal {path} is unreadable ({error}); moved to {aside}", path=str(self.path), error=str(e), aside=str(aside))
            os.replace(self.path, aside)
            return []

    def save(self, entries: Iterable[UndoEntry]) -> None:
        """Write C{entries} atomically, replacing what was there."""
        if self.path is None:
            return
        text = json.dumps({"entries": [asdict(e) for e in entries]}, default=str)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".sm-undo-", dir=str(self.path.parent))
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise


class Undoer:
    """
    Carries out pending undos until each aggregate confirms.

    @ivar retry: seconds between attempts.
    @ivar give_up: seconds after which an entry is given up.
    @ivar settle: the least time between the two clean checks that end an unknown outcome.
    @ivar done: entries finished since start (for statistics and tests).
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        fanout: FanOut,
        records: Sequence[PeerRecord],
        journal: UndoJournal,
        retry: float = DEFAULT_UNDO_RETRY,
        give_up: float = DEFAULT_UNDO_GIVE_UP,
        settle: float = 30.0,
        call_timeout: float = 30.0,
    ) -> None:
        self._clock = clock
        self._fanout = fanout
        self._records = {r.url: r for r in records}
        self.journal = journal
        self.retry = retry
        self.give_up = give_up
        self.settle = settle
        self.call_timeout = call_timeout
        self.done = 0
        self._entries: dict[tuple[str, str], UndoEntry] = {e.key: e for e in journal.load()}
        self._busy: set[tuple[str, str]] = set()
        self._loop: LoopingCall | None = None
        if self._entries:
            self.log.info("{count} undo(s) of failed Allocates pending from before the restart", count=len(self._entries))

    @property
    def pending(self) -> list[UndoEntry]:
        """The entries not finished yet."""
        return list(self._entries.values())

    def open(self, entries: Sequence[UndoEntry]) -> None:
        """Write down new entries (before anything is attempted)."""
        for entry in entries:
            self._entries[entry.key] = entry
        self.journal.save(self._entries.values())

    def start(self) -> None:
        """Retry pending entries every C{retry} seconds."""
        if self._loop is None:
            self._loop = LoopingCall(self._tick)
            self._loop.clock = self._clock
            self._loop.start(self.retry, now=True).addErrback(lambda f: self.log.failure("the undo loop stopped", f))

    def stop(self) -> None:
        """Stop retrying (entries stay in the journal)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def _tick(self) -> Any:
        due = [e for e in self._entries.values() if e.key not in self._busy]
        if not due:
            return None
        d = self.attempt(due)
        d.addErrback(lambda f: self.log.failure("an undo round failed", f))
        return None

    def attempt(self, entries: Sequence[UndoEntry], deadline: float | None = None) -> Deferred[list[UndoEntry]]:
        """
        Try each entry once (concurrently); fire with those still pending.

        @return: a Deferred firing with a list of L{UndoEntry}.
        """
        return Deferred.fromCoroutine(self._attempt(list(entries), deadline))

    async def _attempt(self, entries: list[UndoEntry], deadline: float | None) -> list[UndoEntry]:
        now = self._clock.seconds()
        for entry in [e for e in entries if now - e.created >= self.give_up]:
            self.log.warn(
                "giving up the undo of Allocate {call_id} at {peer} after {secs:.0f} s: {last}",
                call_id=entry.call_id, peer=entry.peer_name, secs=now - entry.created, last=entry.last,
            )
            self._finish(entry)
        entries = [e for e in entries if e.key in self._entries and e.key not in self._busy]
        if deadline is None:
            deadline = now + self.call_timeout
        for entry in entries:
            self._busy.add(entry.key)
        try:
            await DeferredList([Deferred.fromCoroutine(self._one(e, deadline)) for e in entries], consumeErrors=True)
        finally:
            for entry in entries:
                self._busy.discard(entry.key)
            self.journal.save(self._entries.values())
        return [e for e in entries if e.key in self._entries]

    async def _call(self, record: PeerRecord, method: str, params: tuple[Any, ...], deadline: float) -> PeerOutcome:
        (outcome,) = await self._fanout.run([PeerCall(record, method, params)], deadline)
        return outcome

    def _options(self, entry: UndoEntry) -> dict[str, Any]:
        return dict(entry.options, call_id=f"{entry.call_id}-undo-{entry.attempts}")

    async def _one(self, entry: UndoEntry, deadline: float) -> None:
        record = self._records.get(entry.peer_url)
        if record is None:
            entry.last = "the aggregate is no longer configured"
            return
        entry.attempts += 1
        if entry.slivers is not None:
            outcome = await self._call(record, "Delete", (entry.slivers, entry.credentials, self._options(entry)), deadline)
            if outcome.ok or (outcome.struct is not None and outcome.code == GeniCode.SEARCHFAILED):
                self._confirmed(entry, f"deleted {len(entry.slivers)} sliver(s)")
            else:
                entry.last = outcome.describe()
            return
        options = dict(self._options(entry), geni_rspec_version=GENI_V3)
        outcome = await self._call(record, "Describe", ([entry.slice_urn], entry.credentials, options), deadline)
        if outcome.struct is not None and outcome.code == GeniCode.SEARCHFAILED:
            found: list[str] = []
        elif outcome.ok:
            found = late_slivers(outcome.value, entry)
        else:
            entry.last = outcome.describe()
            entry.clean_since = None
            return
        now = self._clock.seconds()
        if found:
            deleted = await self._call(record, "Delete", (found, entry.credentials, self._options(entry)), deadline)
            entry.clean_since = None
            entry.last = (
                f"deleted {len(found)} sliver(s) its late Allocate made" if deleted.ok else deleted.describe()
            )
            if deleted.ok:
                self.log.warn(
                    "{peer} carried out the failed Allocate {call_id} late; deleted {slivers}",
                    peer=entry.peer_name, call_id=entry.call_id, slivers=", ".join(found),
                )
            return
        if entry.clean_since is None:
            entry.clean_since = now
        if now - entry.clean_since >= self.settle:
            self._confirmed(entry, "nothing of the Allocate is there")
        else:
            entry.last = "nothing found yet; checked again in case the Allocate is still being carried out"

    def _confirmed(self, entry: UndoEntry, what: str) -> None:
        entry.last = what
        self.log.info(
            "undo of Allocate {call_id} at {peer} confirmed: {what}", call_id=entry.call_id, peer=entry.peer_name, what=what
        )
        self._finish(entry)

    def _finish(self, entry: UndoEntry) -> None:
        if self._entries.pop(entry.key, None) is not None:
            self.done += 1
