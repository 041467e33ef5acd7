"""Giving back: make what was received but not loaded (the run stopped, failed, or left it
behind) visible again at once, rather than after its visibility timeout."""

from __future__ import annotations

import queue
from dataclasses import dataclass

from .. import sqs
from ..errors import LoginetlError
from ..sqs import QueueMessage
from .state import Shared, SourceQueue


@dataclass
class GivingBack:
    shared: Shared
    source: SourceQueue

    def release_everything_in_hand(self) -> None:
        """At the end of the run: the loader's batch and leftover, and all still in the inbox."""
        shared = self.shared
        self.release(shared.in_hand + shared.leftover + self._empty_inbox())
        shared.in_hand, shared.leftover = [], []

    def release(self, messages: list[QueueMessage]) -> None:
        """Best effort: if SQS is what failed, the messages come back on their own."""
        if not messages:
            return
        self.source.keeper.let_go(messages)
        self.shared.count_released(len(messages))
        try:
            sqs.release(self.source.sqs, self.source.url, messages)
        except LoginetlError:
            pass

    def _empty_inbox(self) -> list[QueueMessage]:
        messages: list[QueueMessage] = []
        while True:
            try:
                messages += self.shared.inbox.get_nowait()
            except queue.Empty:
                return messages
