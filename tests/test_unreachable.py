"""A run that cannot reach an end says so, at once and while it waits (issue 36, item 4).

`loginetl run` as a process, against ends where nothing listens (a free port) or behind a TCP
proxy that is cut and restored: both ends are reached side by side at start, each one that
cannot be reached is named in a warning of its own at once, and while the database is waited
for, one line every LOGINETL_OUTAGE_REPORT_EVERY seconds (30 by default, shortened here) says
since when and until when. Every wait is on what the process says, never a sleep.
"""

import json
import signal

from tests.support.data import rows
from tests.support.faults import Watched, free_port, proxy_for, through
from tests.support.runs import env_for, init, valid_bodies

PASSWORD = "Unreach-4b1d-secret"
EVERY = 1.0  # seconds between two "still unavailable" lines, in these tests


def dead_database() -> tuple[str, str]:
    """(URL with a password, its location): a database on a port where nothing listens."""
    port = free_port()
    return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{port}/logins", f"127.0.0.1:{port}/logins"


def dead_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"


def index_of(lines: list[str], text: str) -> int:
    return next(i for i, line in enumerate(lines) if text in line)


def test_a_run_that_reaches_neither_end_names_both_at_once_and_exits_1():
    url, location = dead_database()
    endpoint = dead_endpoint()
    env = env_for(f"{endpoint}/000000000000/login-queue", url,
                  LOGINETL_OUTAGE_REPORT_EVERY=str(EVERY), AWS_MAX_ATTEMPTS="4")  # fmt: skip
    process = Watched("run", "--retry-for", "300", env=env)
    process.wait_for(f"database {location} unavailable")
    process.wait_for(f"SQS endpoint {endpoint} unreachable")

    code, stdout, stderr = process.finish(timeout=120)  # far less than --retry-for

    lines = stderr.splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert code == 1, stderr
    assert len(errors) == 1 and endpoint in errors[0], stderr  # botocore gave up on SQS
    # Each end named in a line of its own, before the run ended: the database not only after
    # botocore's retries, the SQS endpoint as its first attempt failed, not after the wait.
    end = index_of(lines, "Error:")
    assert index_of(lines, f"database {location} unavailable (") < end
    assert "attempt 1 of 4" in lines[index_of(lines, f"SQS endpoint {endpoint} unreachable")]
    assert index_of(lines, f"SQS endpoint {endpoint} unreachable") < end
    assert sum("unavailable (" in line or "unreachable (" in line for line in lines) == 2
    assert PASSWORD not in stdout + stderr
    assert "Traceback" not in stderr


def test_the_wait_for_a_database_is_said_every_interval_with_since_and_until(queues):
    url, location = dead_database()
    env = env_for(queues.url, url, LOGINETL_OUTAGE_REPORT_EVERY=str(EVERY))
    process = Watched("--log-format", "json", "run", "--retry-for", "60", env=env)
    process.wait_for('"database_still_unavailable"', times=3)
    process.process.send_signal(signal.SIGTERM)  # stops the wait

    code, stdout, stderr = process.finish()

    events = [json.loads(line) for line in stderr.splitlines()]
    warnings = [e for e in events if e["level"] == "warning" and e["event"] != "signal"]
    assert code == 1, stderr  # stopped while waiting for the database, as before
    assert warnings[0]["event"] == "database_unavailable"
    assert warnings[0]["database"] == location
    still = warnings[1:]
    assert len(still) >= 3 and {e["event"] for e in still} == {"database_still_unavailable"}
    # One line an interval, never more often: the i-th comes at least i intervals in (the
    # process's own clock), and each says since when and until when it is waited for.
    since = still[0]["since"]
    for number, line in enumerate(still, start=1):
        assert line["seconds"] >= number * EVERY * 0.99, still
        assert line["database"] == location and line["since"] == since
        assert line["retry_for"] == 60 and 0 < line["seconds_left"] <= 60
        assert line["until"] > since and line["until"].endswith("Z")
        assert f"database {location} still unavailable since {since}" in line["message"]
        assert f"retrying until {line['until']}" in line["message"]
        assert "left of --retry-for 60 s" in line["message"]
    lefts = [line["seconds_left"] for line in still]
    assert lefts == sorted(lefts, reverse=True)
    assert not [e for e in events if e["event"] == "endpoint_unavailable"]  # SQS was fine
    assert PASSWORD not in stdout + stderr


def test_a_database_back_after_a_wait_at_start_is_loaded_into_and_the_end_said(
    queues, database_url, db
):
    init(database_url)
    queues.send(valid_bodies()[:10])
    proxy = proxy_for(database_url)
    proxy.cut()  # down before the run starts
    env = env_for(queues.url, through(proxy, database_url),
                  LOGINETL_OUTAGE_REPORT_EVERY=str(EVERY))  # fmt: skip
    process = Watched("run", "--json", "--retry-for", "120", env=env)
    try:
        process.wait_for("still unavailable since", times=2)
        proxy.restore()
        code, stdout, stderr = process.finish()
    finally:
        proxy.cut()

    assert code == 0, stderr
    assert json.loads(stdout)["loaded"] == 10 and len(rows(db)) == 10
    assert queues.count() == 0
    said = [line for line in stderr.splitlines() if " WARNING " in line]
    location = f"127.0.0.1:{proxy.port}/"
    assert "unavailable (" in said[0] and location in said[0]
    assert "available again after" in said[-1] and location in said[-1]
    assert all("still unavailable since" in line for line in said[1:-1]) and len(said) >= 4
    assert "unreachable" not in stderr  # SQS answered from the start


def test_a_stream_run_names_the_database_the_dead_letter_queue_and_kinesis_at_once():
    url, location = dead_database()
    sqs, kinesis = dead_endpoint(), dead_endpoint()
    env = env_for("", url, LOGINETL_DLQ_URL=f"{sqs}/000000000000/logins-dlq",
                  AWS_ENDPOINT_URL_KINESIS=kinesis, AWS_MAX_ATTEMPTS="4")  # fmt: skip
    del env["LOGINETL_QUEUE_URL"]
    process = Watched("run", "--stream", "logins", "--retry-for", "300", env=env)
    for named in (f"database {location} unavailable", f"SQS endpoint {sqs} unreachable",
                  f"Kinesis endpoint {kinesis} unreachable"):  # fmt: skip
        process.wait_for(named)

    code, stdout, stderr = process.finish(timeout=120)

    errors = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert code == 1, stderr
    assert len(errors) == 1 and (sqs in errors[0] or kinesis in errors[0]), stderr
    assert PASSWORD not in stdout + stderr
    assert "Traceback" not in stderr
