"""Adapting: how many receivers should poll, from what each receive brings back.

With no `--concurrency`, a run starts with one receiver. Once a round (as many receives as
there are receivers) it adds one while receives come back full and the inbox has room (the
queue holds more, and the loader keeps up), and drops one when the inbox is backed up (the
loader is what limits) or full receives take much longer than the fastest seen (the server is
what limits: more receivers would only queue there, and cost CPU here). It drops one at once
for each receive that comes back empty. Idle, that leaves one receiver long-polling: a few
requests a minute. `--concurrency N` pins the count at N (least = most = N).

Up to PROBED_FROM receivers, and further while receives take at most PLAINLY times as long as
the fastest seen, one more receiver plainly brings more: behind real round trips, receives
slow down little as receivers are added. Past that (and again only after idle has brought the
count down to one), each added receiver is a trial: the receivers' pace (full receives a
second, all receivers together) over a window of WINDOW full receives at the new count is set
against the window just before, at the count before. A receiver under which the pace fell by
more than LOSS is taken back, and that count is not tried again for COOLDOWN windows, twice as
long after each trial that fails in a row. Windows, not single rounds: one round's pace jumps
from one round to the next (the loader's commits stall every receiver at once); against the
window just before, not the best ever seen, as a run's pace drifts (a fresh queue answers
faster than one being deleted from). A window's pace is still noisy on a shared machine, more
than one receiver in many adds, so the rule gives a receiver the benefit of the doubt: where
receivers past a few bring no more (loopback), the count may wander between a few and
MOST_RECEIVERS, which costs no throughput there; a receiver that makes things plainly worse
goes.

Each receiver asks `wanted()` before it polls and retires when there are more of them than
wanted; the receivers start new ones while `wanted()` is above their number.
"""

from __future__ import annotations

import threading

MOST_RECEIVERS = 16  # with no --concurrency: enough to keep a queue busy across a region
# Grow while full receives take at most GROW_WITHIN times the fastest seen, shrink beyond
# SHRINK_BEYOND: only a server choking on the load slows that much.
GROW_WITHIN = 8.0
SHRINK_BEYOND = 12.0
PLAINLY = 6.0  # while receives take at most this times the fastest, one more plainly pays
SMOOTHING = 0.2  # weight of each full receive's duration in the running average
FORGETTING = 1.001  # the fastest creeps up 0.1% a full receive: a server slow for good is
# not held against it forever (twice as slow is the norm after ~700 full receives)
PROBED_FROM = 4  # a receiver added to at least this many is a trial, whatever the durations
WINDOW = 50  # full receives (500 messages) a trial's pace is measured over, at each count
LOSS = 0.05  # a trial receiver is taken back when the pace falls by more than 5%
COOLDOWN = 4  # windows before a count that failed its trial is tried again (doubling)
MOST_COOLDOWN = 64  # windows, at most


class Adaptation:
    """The number of receivers wanted, changed by what receives bring back. Thread-safe."""

    def __init__(self, least: int = 1, most: int = MOST_RECEIVERS, start: int = 1) -> None:
        if not 1 <= least <= most:
            raise ValueError(f"need 1 <= least <= most, got {least} and {most}")
        self.least, self.most = least, most
        self.target = min(most, max(least, start))
        self.lock = threading.Lock()
        self.average: float | None = None  # seconds a full receive takes, smoothed
        self.fastest: float | None = None  # the lowest that average has been
        self.round = 0  # receives since the round began
        self.ramping = True  # receives as fast as ever so far: growth is not a trial
        self.settling = True  # the first round at a new count is not measured
        self.window: list[float] = []  # durations of full receives at this count
        self.before: float | None = None  # the pace at the count before, in a trial
        self.waiting = 0  # windows before the failed count may be tried again
        self.cooldown = COOLDOWN  # windows the next failure waits

    @classmethod
    def fixed(cls, receivers: int) -> Adaptation:
        return cls(receivers, receivers, receivers)

    @property
    def adaptive(self) -> bool:
        return self.least < self.most

    def wanted(self) -> int:
        with self.lock:
            return self.target

    def received(self, got: int, asked: int, backed_up: bool, seconds: float) -> int:
        """After a receive that asked for `asked` and got `got` messages in `seconds`;
        `backed_up`: the inbox is full, the loader behind. Returns the receivers now wanted."""
        with self.lock:
            if not self.adaptive:
                return self.target
            if got == 0:  # nothing there: one receiver fewer at once
                self._change(self.target - 1)
                self.ramping = self.ramping or self.target == self.least  # idle: start afresh
                return self.target
            full = got >= asked
            slower = self._slowdown(seconds) if full else 1.0  # a partial one waited, maybe
            if full and not self.settling:
                self.window.append(seconds)
            self.round += 1
            if self.round >= self.target:  # one change a round: each receiver had its say
                self.round, self.settling = 0, False
                self._end_round(full, backed_up, slower)
            return self.target

    def _end_round(self, full: bool, backed_up: bool, slower: float) -> None:
        if backed_up or slower > SHRINK_BEYOND:
            self._change(self.target - 1)
            return
        may_grow = full and slower <= GROW_WITHIN and self.target < self.most
        self.ramping = self.ramping and (self.target < PROBED_FROM or slower <= PLAINLY)
        if self.ramping:  # one more plainly pays
            if may_grow:
                self.before = None
                self._change(self.target + 1)
            return
        if len(self.window) < WINDOW:
            return
        pace = self.target * WINDOW / sum(self.window[:WINDOW])  # windows of one length
        self.window = []
        if self.before is not None:  # this window judges the receiver added
            if pace < self.before * (1 - LOSS):
                self.waiting, self.cooldown = self.cooldown, min(MOST_COOLDOWN, 2 * self.cooldown)
                self._change(self.target - 1)
                return
            self.cooldown = COOLDOWN  # it paid
        self.before = None
        self.waiting = max(0, self.waiting - 1)
        if may_grow and not self.waiting:
            self.before = pace
            self._change(self.target + 1)

    def _change(self, target: int) -> None:
        """To `target` receivers (within bounds); what was measured at the old count is void,
        but for the pace a trial is judged against."""
        target = min(self.most, max(self.least, target))
        if target != self.target:
            if target < self.target:
                self.before = None
            self.target, self.round, self.window, self.settling = target, 0, [], True

    def _slowdown(self, seconds: float) -> float:
        """The smoothed duration of full receives over the fastest it has been."""
        if self.average is None:
            self.average = seconds
        else:
            self.average += SMOOTHING * (seconds - self.average)
        forgotten = self.fastest * FORGETTING if self.fastest else self.average
        self.fastest = min(forgotten, self.average)
        return self.average / self.fastest if self.fastest > 0 else 1.0
