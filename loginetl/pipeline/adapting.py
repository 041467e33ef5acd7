"""Adapting: how many receivers should poll, from what each receive brings back.

With no `--concurrency`, a run starts with one receiver and, once a round (as many receives
as there are receivers), adds one while receives come back full and the inbox has
room (the queue holds more, and the loader keeps up) and SQS answers about as fast as it did
with fewer receivers, or drops one when full receives take much longer than they used to (the
server is what limits: more receivers would only queue there, and cost CPU here) or the inbox
is backed up (the loader is what limits). A receiver added that slowed the others down so
much that together they receive less than the best so far (their pace: receivers over a
full receive's mean duration, in its first round) is taken back, and not tried again for
COOLDOWN rounds: on loopback, where 16 receivers brought no more messages than 4 and more
CPU (issue 13), runs measured held between 3 and 11. It drops one at once for each receive
that comes back empty. Idle, that leaves one receiver long-polling: a few requests a minute.
`--concurrency N` pins the count at N (least = most = N).

Each receiver asks `wanted()` before it polls and retires when there are more of them than
wanted; the receivers start new ones while `wanted()` is above their number.
"""

from __future__ import annotations

import threading

MOST_RECEIVERS = 16  # with no --concurrency: enough for 50 ms round trips (about 3,000 msg/s)
# Grow while full receives take at most GROW_WITHIN times the fastest seen, shrink beyond
# SHRINK_BEYOND: only a server choking on the load slows that much (behind 50 ms round trips,
# LocalStack on 2 cores answers 16 receivers ~8 times slower than one, yet 16 drain fastest).
GROW_WITHIN = 8.0
SHRINK_BEYOND = 12.0
SMOOTHING = 0.2  # weight of each full receive's duration in the running average
FORGETTING = 1.001  # the fastest creeps up 0.1% a full receive: a server slow for good is
# not held against it forever (twice as slow is the norm after ~700 full receives)
PROBED_FROM = 4  # a receiver added to at least this many must pay (fewer: too few samples)
WORSE = 0.9  # it is taken back when their pace falls under 0.9 x the best so far
COOLDOWN = 50  # rounds before a receiver taken back is tried again


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
        self.round = 0  # receives since the last change
        self.durations: list[float] = []  # of this round's full receives
        self.was = self.target  # the last round's target
        self.best = 0.0  # the highest pace of a round, creeping down as `fastest` creeps up
        self.ceiling = most + 1  # no growth to this many while the cooldown lasts
        self.cooldown = 0  # rounds left

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
            if got == 0:  # nothing there: one receiver fewer at once
                self.target = max(self.least, self.target - 1)
                return self.target
            full = got >= asked
            slower = self._slowdown(seconds) if full else 1.0  # a partial one waited, maybe
            if full:
                self.durations.append(seconds)
            self.round += 1
            if self.round < self.target:  # one change a round: each receiver had its say
                return self.target
            self._end_round(full, backed_up, slower)
            return self.target

    def _end_round(self, full: bool, backed_up: bool, slower: float) -> None:
        target, durations = self.target, self.durations
        # Receives a second from all receivers together, as this round's full ones took.
        pace = target * len(durations) / sum(durations) if sum(durations) > 0 else 0.0
        added = self.was == target - 1 and target >= PROBED_FROM  # this round tried one more
        self.was, self.round, self.durations = target, 0, []
        self.cooldown = max(0, self.cooldown - 1)
        self.best /= FORGETTING ** len(durations)
        if added and pace and pace < WORSE * self.best:
            self.target, self.ceiling, self.cooldown = target - 1, target, COOLDOWN
            return
        self.best = max(self.best, pace)
        if backed_up or slower > SHRINK_BEYOND:
            self.target = max(self.least, target - 1)
        elif full and slower <= GROW_WITHIN and not (self.cooldown and target + 1 >= self.ceiling):
            self.target = min(self.most, target + 1)

    def _slowdown(self, seconds: float) -> float:
        """The smoothed duration of full receives over the fastest it has been."""
        if self.average is None:
            self.average = seconds
        else:
            self.average += SMOOTHING * (seconds - self.average)
        forgotten = self.fastest * FORGETTING if self.fastest else self.average
        self.fastest = min(forgotten, self.average)
        return self.average / self.fastest if self.fastest > 0 else 1.0
