"""Receiving: `concurrency` threads long-poll the source queue and put what arrives into the
inbox, waiting while it is full (back-pressure), until the queue comes back empty (unless
following), the budget is spent, or the run stops."""

from __future__ import annotations

import queue
import threading

from .. import extract
from ..errors import LoginetlError
from ..extract import QueueMessage
from ..metrics import Metrics
from .giving_back import GivingBack
from .state import Shared, SourceQueue


class Receivers:
    def __init__(
        self, shared: Shared, source: SourceQueue, metrics: Metrics, giving_back: GivingBack
    ) -> None:
        self.shared = shared
        self.source = source
        self.metrics = metrics
        self.giving_back = giving_back
        self.threads = [
            threading.Thread(target=self._loop, name=f"receive-{n}", daemon=True)
            for n in range(shared.options.concurrency)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def join(self) -> None:
        self.shared.stop_receiving = True
        for thread in self.threads:
            thread.join()

    def _loop(self) -> None:
        try:
            self._receive_until_done()
        except Exception as error:  # a bug: end the run with it rather than lose the thread
            self.shared.fail(LoginetlError(f"receiver failed: {type(error).__name__}: {error}"))

    def _receive_until_done(self) -> None:
        shared, options = self.shared, self.shared.options
        while shared.receiving():
            wanted = shared.reserve(extract.MAX_PER_CALL)
            if wanted == 0:
                return
            try:
                received = extract.receive(
                    self.source.sqs, self.source.url, wanted, options.wait_time
                )
            except LoginetlError as error:
                shared.fail(error)
                return
            shared.unreserve(wanted - len(received))
            self.source.keeper.hold(received)
            self.metrics.polled(len(received))
            new = shared.count_received(received)
            if not new:
                if options.follow:
                    continue
                return
            if not self._put(new):
                self.giving_back.release(new)
                return

    def _put(self, messages: list[QueueMessage]) -> bool:
        """Into the inbox, waiting while it is full; False if the run stopped meanwhile."""
        while self.shared.receiving():
            try:
                self.shared.inbox.put(messages, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
