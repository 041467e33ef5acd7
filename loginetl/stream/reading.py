"""Reading a stream: one thread per shard this process holds, putting what GetRecords returns
into the inbox the loader takes batches from; and the coordinator, which renews and takes
leases every `renew` seconds, starts a reader for each shard taken and stops the reader of each
shard lost.

A shard reader starts just after its checkpoint (or at TRIM_HORIZON / LATEST when it has
none). It stops at the shard's tip unless following; a closed shard read to its end is marked
finished once all of it is committed, so its children (which the coordinator takes only
then) are read after it, in order for each partition key.

A run without --follow ends only when every shard it may read is read to its tip, or held by
another process that is seen renewing its lease: a lease whose owner stopped renewing (killed,
say) is waited out and taken, so the run never calls the stream read while part of it was
skipped. The shards left to live holders are `not_read`, for the summary to name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

from ..errors import LoginetlError
from ..pipeline.state import Shared
from . import client as kinesis
from .leases import Held, Lease, Leases
from .metrics import StreamMetrics

log = logging.getLogger(__name__)

MAX_RECORDS = 1000  # GetRecords Limit per call (AWS allows 10,000)
IDLE_WAIT = 0.5  # seconds between GetRecords on a shard at its tip (AWS: 5 calls/s/shard)


@dataclass
class ShardState:
    """What the run knows of one shard it holds."""

    lease: Lease
    read_to: tuple[int, int] | None = None  # the last record put into the inbox
    committed: tuple[int, int] | None = None  # the last record committed
    millis_behind: int = 0
    lost: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


class Reading:
    """The readers of one stream run and the coordinator that hands them shards."""

    def __init__(
        self,
        shared: Shared,
        kinesis_client,
        stream: str,
        leases: Leases,
        start_at: str,
        renew_seconds: float,
        metrics: StreamMetrics,
    ) -> None:
        self.shared = shared
        self.client = kinesis_client
        self.stream = stream
        self.leases = leases
        self.start_at = start_at
        self.renew_seconds = renew_seconds
        self.metrics = metrics
        self.shards: dict[str, ShardState] = {}
        self.lock = threading.Lock()  # guards `shards`
        self.changed = threading.Event()  # a reader ended or a shard closed: act now
        self.done = threading.Event()
        self.last_committed: dict[str, tuple[int, int] | None] = {}  # every shard read
        self.reserved = 0  # of the budget, taken by readers whose GetRecords is under way
        # Another owner's lease on each shard as first seen (owner, last renewal): a lease seen
        # to change since is alive; one that does not is waited out until it expires.
        self.first_seen: dict[str, tuple[str, object]] = {}
        self.not_read: list[Held] = []  # left to live holders when a one-shot run ended
        self.coordinator = threading.Thread(target=self._coordinate, name="leases", daemon=True)

    def start(self, shards: list[kinesis.Shard] | None = None) -> None:  # None: list them now
        self.leases.sync(shards or kinesis.list_shards(self.client, self.stream))
        self.coordinator.start()

    def alive(self) -> bool:
        return not self.done.is_set()

    def join(self) -> None:
        self.shared.stop_receiving = True
        self.changed.set()
        self.coordinator.join()
        for state in list(self.shards.values()):
            if state.thread is not None:
                state.thread.join()

    def reserve(self, most: int) -> int | None:
        """Up to `most` of the budget for one GetRecords; None when it is spent for good (0
        while other readers hold what is left, which they may give back)."""
        with self.lock:
            wanted = self.shared.reserve(most)
            self.reserved += wanted
            return None if wanted == 0 and self.reserved == 0 else wanted

    def used(self, wanted: int, kept: int) -> None:
        with self.lock:
            self.shared.unreserve(wanted - kept)
            self.reserved -= wanted

    def committed(self, positions: dict[str, tuple[int, int]]) -> None:
        with self.lock:
            self.last_committed |= positions
            for shard_id, position in positions.items():
                if shard_id in self.shards:
                    self.shards[shard_id].committed = position
        self.changed.set()

    def drop(self, shard_id: str) -> None:
        """The lease is lost (found at renewal, or at COMMIT): stop reading the shard."""
        with self.lock:
            state = self.shards.pop(shard_id, None)
        if state is not None:
            state.lost.set()
            self.metrics.lost()
        log.warning(
            "lease on shard %s lost", shard_id, extra={"event": "lease_lost", "shard": shard_id}
        )
        self.changed.set()

    def checkpoints(self) -> list[dict]:
        """Each shard this run read, with its checkpoint at the end."""
        with self.lock:
            return [
                {"id": shard_id, "checkpoint": None if position is None else _text(position)}
                for shard_id, position in sorted(self.last_committed.items())
            ]

    # --- the coordinator ----------------------------------------------------------------------

    def _coordinate(self) -> None:
        try:
            with self.shared.failing_as("lease coordinator"):
                self._rounds()
        finally:
            self.done.set()
            self.shared.wake_loader()

    def _rounds(self) -> None:
        shared = self.shared
        last_round = 0.0
        while shared.receiving():
            readers_alive = self._readers_alive()
            due = time.monotonic() - last_round >= self.renew_seconds
            if due or not readers_alive:
                if self.closed_since_sync:
                    self.leases.sync(kinesis.list_shards(self.client, self.stream))
                    self.closed_since_sync = False
                follow = shared.options.follow
                outcome = self.leases.round(wanted=shared.budget != 0, steal=follow)
                last_round = time.monotonic()
                for shard_id in outcome.lost:
                    self.drop(shard_id)
                for lease in outcome.taken:
                    self._start_reader(lease)
                self.metrics.held(len(self.leases.held), len(outcome.taken))
                idle = not follow and not outcome.taken and not self._readers_alive()
                if idle and (shared.budget == 0 or self._only_live_holders(outcome.held_by_others)):
                    return  # every shard is read to its tip or left to a live holder
            self.changed.wait(min(self.renew_seconds, 1.0))
            self.changed.clear()

    def _only_live_holders(self, held: list[Held]) -> bool:
        """Whether each shard another owner holds was seen renewed since first seen: those
        are `not_read`. A lease not seen renewed yet may be a dead owner's: wait for it."""
        live = []
        for lease in held:
            now = (lease.owner, lease.updated_at)
            if self.first_seen.setdefault(lease.shard_id, now) != now:
                live.append(lease)
        if len(live) < len(held):
            return False
        self.not_read = live
        return True

    closed_since_sync = False  # a shard finished: list the shards again at the next round

    def _readers_alive(self) -> bool:
        with self.lock:
            return any(s.thread is not None and s.thread.is_alive() for s in self.shards.values())

    def _start_reader(self, lease: Lease) -> None:
        state = ShardState(lease, read_to=lease.checkpoint, committed=lease.checkpoint)
        state.thread = threading.Thread(
            target=ShardReader(self, state).run, name=f"read-{lease.shard_id}", daemon=True
        )
        with self.lock:
            self.shards[lease.shard_id] = state
            self.last_committed.setdefault(lease.shard_id, lease.checkpoint)
        log.info(
            "lease on shard %s taken",
            lease.shard_id,
            extra={"event": "lease_taken", "shard": lease.shard_id},
        )
        state.thread.start()


class ShardReader:
    """Reads one shard into the inbox, from just after its checkpoint."""

    def __init__(self, reading: Reading, state: ShardState) -> None:
        self.reading = reading
        self.shared = reading.shared
        self.client = reading.client
        self.stream = reading.stream
        self.metrics = reading.metrics
        self.state = state

    def run(self) -> None:
        try:
            with self.shared.failing_as("reader"):
                self._read_until_done(self.state)
        finally:
            self.reading.changed.set()

    def _reading(self, state: ShardState) -> bool:
        return self.shared.receiving() and not state.lost.is_set()

    def _read_until_done(self, state: ShardState) -> None:
        shard_id, shared = state.lease.shard_id, self.shared
        iterator = None
        while self._reading(state):
            if iterator is None:
                after = None if state.read_to is None else str(state.read_to[0])
                iterator = kinesis.shard_iterator(
                    self.client, self.stream, shard_id, after, self.reading.start_at
                )
            wanted = self.reading.reserve(MAX_RECORDS)
            if wanted is None:
                return
            if wanted == 0:  # others hold the rest of the budget for now
                shared.stop.wait(0.05)
                continue
            try:
                read = kinesis.get_records(self.client, self.stream, shard_id, iterator, wanted)
            except kinesis.IteratorExpired:  # 5 minutes unused: a new one from where we are
                self.reading.used(wanted, 0)
                iterator = None
                continue
            except LoginetlError:
                self.reading.used(wanted, 0)
                raise
            fresh = [r for r in read.records if state.read_to is None or r.position > state.read_to]
            kept = fresh[:wanted]
            self.reading.used(wanted, len(kept))
            state.millis_behind = read.millis_behind
            self.metrics.behind(shard_id, read.millis_behind)
            if kept:
                new = shared.count_received(kept)
                self.metrics.polled(len(new))
                if not self._put(state, new):
                    return
                state.read_to = kept[-1].position
            if len(kept) < len(fresh):  # the budget cut this read: re-read the rest later
                iterator = None
                continue
            iterator = read.next_iterator
            if iterator is None:
                self._finish(state)
                return
            if not kept:
                self.metrics.polled(0)
                if read.millis_behind > 0:
                    continue  # records are further on: read again at once
                if not shared.options.follow:
                    return  # at the tip
                if shared.stop.wait(IDLE_WAIT):
                    return

    def _put(self, state: ShardState, records: list) -> bool:
        while self._reading(state):
            try:
                self.shared.inbox.put(records, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _finish(self, state: ShardState) -> None:
        """The shard is closed and read to its end: once all of it is committed, mark it
        finished (its children may then start) and let its lease go."""
        while self._reading(state) and state.committed != state.read_to:
            self.reading.changed.wait(0.1)
        if not self._reading(state) and state.committed != state.read_to:
            return
        self.reading.leases.finish(state.lease.shard_id)
        self.reading.closed_since_sync = True  # before it ends: the coordinator then lists
        with self.reading.lock:
            self.reading.shards.pop(state.lease.shard_id, None)
        log.info(
            "shard %s finished",
            state.lease.shard_id,
            extra={"event": "shard_finished", "shard": state.lease.shard_id},
        )


def _text(position: tuple[int, int]) -> str:
    sequence, sub = position
    return str(sequence) + ("" if sub < 0 else f"/{sub}")
