"""How `run` behaves at the terminal: signals finish the batch in hand, the work runs in a
worker thread so a second signal can exit at once, and a live progress line on stderr."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ..pipeline import RunSummary
from .. import logs
from .common import say, stderr


@contextmanager
def stop_on_signals():
    """SIGINT/SIGTERM: finish the batch in hand, then stop. A second one exits at once, which is
    still safe: nothing is deleted from the queue before it is committed."""
    stop = threading.Event()

    def handle(signum, frame):
        if stop.is_set():
            os._exit(128 + signum)
        stop.set()
        say(
            f"{signal.Signals(signum).name}: finishing the batch in hand "
            "(signal again to exit at once)",
            "signal",
        )

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def in_worker_thread(work):
    """Run `work` in a thread and wait for it here: Python runs signal handlers only in the main
    thread, between bytecodes, so the main thread must not sit in a blocking C call (a query
    waiting on a lock) if a second signal is to exit at once."""
    outcome: dict = {}

    def target():
        try:
            outcome["result"] = work()
        except BaseException as error:  # handed to the main thread below
            outcome["error"] = error

    worker = threading.Thread(target=target, name="run")
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


class run_progress:
    """A live line on stderr while `run` works; yields the callback the pipeline calls."""

    def __init__(self, total: int | None) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn() if total else TextColumn(""),
            TextColumn("{task.completed} received"),
            TimeElapsedColumn(),
            console=stderr,
            transient=True,
            disable=logs.json_lines() or not stderr.is_terminal,
        )
        self.task = self.progress.add_task("loading", total=total)

    def __enter__(self):
        self.progress.start()
        return self.update

    def update(self, summary: RunSummary) -> None:
        self.progress.update(
            self.task,
            completed=summary.received,
            description=f"loaded {summary.loaded}, dead-lettered {sum(summary.dead_lettered.values())}",
        )

    def __exit__(self, *exc) -> None:
        self.progress.stop()
