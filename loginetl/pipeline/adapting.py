"""Adapting: how many receivers should poll, from what each receive brings back.

With no `--concurrency`, a run starts with one receiver and adds one each time a receive comes
back full while the inbox has room (the queue holds more, and the loader keeps up); it drops
one when a receive comes back empty or the inbox backs up (the loader is what limits). Idle,
that leaves one receiver long-polling: a few requests a minute. `--concurrency N` pins the
count at N (least = most = N).

Each receiver asks `wanted()` before it polls and retires when there are more of them than
wanted; the receivers start new ones while `wanted()` is above their number.
"""

from __future__ import annotations

import threading

MOST_RECEIVERS = 16  # with no --concurrency: enough for 50 ms round trips (about 3,000 msg/s)


class Adaptation:
    """The number of receivers wanted, changed by what receives bring back. Thread-safe."""

    def __init__(self, least: int = 1, most: int = MOST_RECEIVERS, start: int = 1) -> None:
        if not 1 <= least <= most:
            raise ValueError(f"need 1 <= least <= most, got {least} and {most}")
        self.least, self.most = least, most
        self.target = min(most, max(least, start))
        self.lock = threading.Lock()

    @classmethod
    def fixed(cls, receivers: int) -> Adaptation:
        return cls(receivers, receivers, receivers)

    @property
    def adaptive(self) -> bool:
        return self.least < self.most

    def wanted(self) -> int:
        with self.lock:
            return self.target

    def received(self, got: int, asked: int, backed_up: bool) -> int:
        """After a receive that asked for `asked` and got `got` messages; `backed_up`: the inbox
        is full, the loader behind. Returns the receivers now wanted."""
        with self.lock:
            if got == 0 or backed_up:
                self.target = max(self.least, self.target - 1)
            elif got >= asked:
                self.target = min(self.most, self.target + 1)
            return self.target
