"""How an outage is told, without a server: the interval's knob, and one line an interval for
an end however many waiters notice it."""

import logging

import pytest

from loginetl import outages
from loginetl.errors import ConfigError


def test_the_interval_is_30_s_unless_the_knob_says_otherwise(monkeypatch):
    assert outages.report_every() == outages.REPORT_EVERY == 30.0
    monkeypatch.setenv(outages.REPORT_EVERY_ENV, "0.5")
    assert outages.report_every() == 0.5
    for bad in ("0", "-1", "soon", "nan", "inf"):
        monkeypatch.setenv(outages.REPORT_EVERY_ENV, bad)
        with pytest.raises(ConfigError, match=outages.REPORT_EVERY_ENV):
            outages.report_every()


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_two_waiters_on_one_end_say_one_line_an_interval(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(outages.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(outages, "_said", {})  # what other tests' outages said
    logger, kept = logging.getLogger("test_outages"), Kept()
    logger.addHandler(kept)
    first, second = outages.Outage("database h:1/x", 30.0), outages.Outage("database h:1/x", 30.0)
    other = outages.Outage("database h:2/x", 30.0)
    try:
        for _ in range(int(95 / 5)):  # 95 s, every waiter asking every 5 s
            now[0] += 5
            for outage in (first, second, other):
                outage.still(logger, outage.end, "database_still_unavailable")
    finally:
        logger.removeHandler(kept)
    said = [record.getMessage() for record in kept.records]
    assert said.count("database h:1/x") == 3 and said.count("database h:2/x") == 3  # 30, 60, 90
    assert [record.seconds for record in kept.records[::2]] == [30.0, 60.0, 90.0]
