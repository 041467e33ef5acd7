"""PostgreSQL crashing under load: a server of the test's own is stopped the hard way
(`pg_ctl stop -m immediate`, as a crash: no checkpoint, every connection dropped) twice while
`run --follow` loads a backlog, and started again (crash recovery). Nothing is lost or loaded
twice, /healthz says 503 during each outage and 200 after, the process never exits, and each
outage is one warning when it starts and one when it ends."""

import json
import signal
import uuid

import psycopg2
import pytest

from loginetl.stack.postgres import postgres_bin_dir
from tests.support.data import sample_messages
from tests.support.faults import Watched, free_port, wait_until
from tests.support.own_postgres import OwnPostgres
from tests.support.runs import env_for, scrape

VALID = [json.dumps(m) for m in sample_messages() if "user_id" in m]


def loaded(url: str) -> tuple[int, int]:
    """(rows, distinct message ids); (-1, -1) while the server is down."""
    try:
        connection = psycopg2.connect(url, connect_timeout=3)
    except psycopg2.OperationalError:
        return -1, -1
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT sqs_message_id) FROM user_logins")
            return cursor.fetchone()
    finally:
        connection.close()


def healthz(port: int) -> int:
    return scrape(port, "/healthz")[0]


@pytest.mark.slow  # two crashes and recoveries under load: about a minute
def test_postgres_crashing_twice_under_load_loses_and_doubles_nothing(queues):
    server = OwnPostgres(postgres_bin_dir(), f"Crash-{uuid.uuid4().hex[:10]}")
    server.start()
    url = server.url()
    port = free_port()
    sent: list[str] = []
    try:
        env = env_for(queues.url, url)
        init = Watched("init-db", env=env)
        assert init.finish()[0] == 0
        sent += queues.send(VALID * 2)  # the backlog: 198 messages
        service = Watched(
            "run",
            "--follow",
            "--metrics-port",
            str(port),
            "--batch-size",
            "10",
            "--wait-time",
            "1",
            "--retry-for",
            "600",
            env=env,
        )
        for outage, rows_before_crash in ((1, 40), (2, 120)):
            wait_until(
                lambda rows_before_crash=rows_before_crash: loaded(url)[0] >= rows_before_crash,
                timeout=120,
            )
            assert healthz(port) == 200
            server.crash()
            sent += queues.send(VALID)  # more arrive while it is down
            service.wait_for("unavailable", times=outage)
            wait_until(lambda: healthz(port) == 503, timeout=30)
            assert service.process.poll() is None  # it waits, it does not exit
            server.start()
            service.wait_for("available again after", times=outage, timeout=120)
            wait_until(lambda: healthz(port) == 200, timeout=30)
        wait_until(lambda: loaded(url)[0] == len(sent), timeout=180)
        wait_until(lambda: queues.count() == 0, timeout=60)
        assert service.process.poll() is None
        service.process.send_signal(signal.SIGTERM)
        code, _, said = service.finish()
        final = loaded(url)
    finally:
        server.remove()
    assert code == 0, said
    assert final == (len(sent), len(sent))  # every message once: nothing lost, nothing doubled
    assert queues.count(queues.dlq_url) == 0
    said_by_database = [line for line in said.splitlines() if "loginetl.database" in line]
    # (an outage longer than 30 s also says so every 30 s: not the point here)
    outages = [line for line in said_by_database if "still unavailable since" not in line]
    assert len(outages) == 4, outages  # per outage: one line as it starts, one as it ends
    assert [("unavailable (" in line, "available again after" in line) for line in outages] == [
        (True, False),
        (False, True),
        (True, False),
        (False, True),
    ]
