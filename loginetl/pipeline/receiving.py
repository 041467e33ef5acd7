"""Receiving: threads long-poll the source queue and put what arrives into the inbox, waiting
while it is full (back-pressure), until the queue comes back empty (unless following), the
budget is spent, or the run stops. How many poll is the adaptation's call (adapting.py): a
fixed `--concurrency`, or more while receives come back full and fast, fewer when they come
back empty or slow or the inbox backs up."""

from __future__ import annotations

import queue
import threading
import time

from .. import sqs
from ..errors import LoginetlError
from ..metrics import Metrics
from ..sqs import QueueMessage
from .adapting import Adaptation
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
        concurrency = shared.options.concurrency
        self.adaptation = Adaptation.fixed(concurrency) if concurrency else Adaptation()
        self.lock = threading.Lock()  # guards threads and polling
        self.threads: list[threading.Thread] = []
        self.polling = 0  # receivers in their loop
        self.drained = False  # not following, and a receive came back empty: start no more

    def start(self) -> None:
        self._grow()

    def alive(self) -> bool:
        with self.lock:
            return any(thread.is_alive() for thread in self.threads)

    def join(self) -> None:
        self.shared.stop_receiving = True
        while True:  # a receiver may start another meanwhile
            with self.lock:
                running = [thread for thread in self.threads if thread.is_alive()]
            if not running:
                return
            for thread in running:
                thread.join()

    def _grow(self) -> None:
        """Start receivers until as many poll as the adaptation wants."""
        with self.lock:
            while (
                self.polling < self.adaptation.wanted()
                and self.shared.receiving()
                and not self.drained
            ):
                self.polling += 1
                thread = threading.Thread(
                    target=self._loop, name=f"receive-{len(self.threads)}", daemon=True
                )
                self.threads.append(thread)
                thread.start()
            self.metrics.receivers.set(self.polling)

    def _retire(self, unless_wanted: bool) -> bool:
        """Count this receiver out (True) when more poll than wanted, or always if not
        `unless_wanted`; it then leaves its loop."""
        with self.lock:
            if unless_wanted and self.polling <= self.adaptation.wanted():
                return False
            self.polling -= 1
            self.metrics.receivers.set(self.polling)
            return True

    def _loop(self) -> None:
        retired = False
        try:
            retired = self._receive_until_done()
        except Exception as error:  # noqa: BLE001 - a bug: end the run with it rather than lose the thread
            self.shared.fail_on_bug("receiver", error)
        finally:
            if not retired:
                self._retire(unless_wanted=False)

    def _receive_until_done(self) -> bool:
        """Receive until done (False) or until the adaptation retires this receiver (True)."""
        shared, options = self.shared, self.shared.options
        while shared.receiving():
            wanted = shared.reserve(sqs.MAX_PER_CALL)
            if wanted == 0:
                return False
            started = time.monotonic()
            try:
                received = sqs.receive(self.source.sqs, self.source.url, wanted, options.wait_time)
            except LoginetlError as error:
                shared.fail(error)
                return False
            shared.unreserve(wanted - len(received))
            self.source.keeper.hold(received)
            self.metrics.polled(len(received))
            took = time.monotonic() - started
            self.adaptation.received(len(received), wanted, shared.inbox.full(), took)
            new = shared.count_received(received)
            if not new and not options.follow:
                self.drained = True
                return False
            if new and not self._put(new):
                self.giving_back.release(new)
                return False
            if self._retire(unless_wanted=True):
                return True
            self._grow()
        return False

    def _put(self, messages: list[QueueMessage]) -> bool:
        """Into the inbox, waiting while it is full; False if the run stopped meanwhile."""
        while self.shared.receiving():
            try:
                self.shared.inbox.put(messages, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False
