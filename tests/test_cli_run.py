"""`loginetl run` end to end: real SQS server (moto over HTTP), real PostgreSQL."""

import json
from datetime import UTC, datetime

from loginetl import database, load, schema, transform
from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.servers import make_queues, unreachable

KEY = MaskKey(MASK_KEY)


def run_json(cli, *args, env=None):
    result = cli("run", "--json", *args, env=env)
    return result, json.loads(result.stdout)


def test_the_sample_loads_99_rows_and_dead_letters_1(cli, queues, db):
    assert cli("init-db").exit_code == 0
    ids = queues.send_sample()

    result, summary = run_json(cli)

    assert result.exit_code == 0, result.output
    assert summary["received"] == 100
    assert summary["loaded"] == 99
    assert summary["dead_lettered"] == 1
    assert summary["left_on_queue"] == 0
    assert summary["stopped_because"] == "queue drained"
    assert queues.count() == 0

    loaded = rows(db)
    assert len(loaded) == 99
    by_id = {row["sqs_message_id"]: row for row in loaded}
    today = datetime.now(UTC).date()
    for message_id, message in zip(ids, sample_messages(), strict=True):
        if "user_id" not in message:
            assert message_id not in by_id
            continue
        row = by_id[message_id]
        assert row["user_id"] == message["user_id"]
        assert row["device_type"] == message["device_type"]
        assert row["masked_ip"] == KEY.mask(message["ip"])
        assert row["masked_device_id"] == KEY.mask(message["device_id"])
        assert row["locale"] == message["locale"]
        assert row["app_version"] == message["app_version"]
        assert row["create_date"] == today  # the sample has no create_date: the day it was sent
        assert row["mask_key_id"] == KEY.key_id
        assert row["loaded_at"] is not None

    [dead] = queues.drain(queues.dlq_url)
    malformed = next(m for m in sample_messages() if "user_id" not in m)
    assert json.loads(dead["Body"]) == malformed  # body unchanged
    attributes = {k: v["StringValue"] for k, v in dead["MessageAttributes"].items()}
    assert attributes["loginetl-reason"].startswith("schema: missing required field 'user_id'")
    assert attributes["loginetl-original-message-id"] == ids[sample_messages().index(malformed)]
    assert summary["dead_lettered_by_reason"] == {attributes["loginetl-reason"]: 1}


def test_the_same_messages_sent_again_load_again_with_the_same_masks(cli, queues, db):
    cli("init-db")
    queues.send_sample()
    run_json(cli)
    first = {(r["user_id"], r["masked_ip"], r["masked_device_id"]) for r in rows(db)}

    queues.send_sample()
    _, summary = run_json(cli)

    assert summary["loaded"] == 99 and summary["duplicates"] == 0
    everything = rows(db)
    assert len(everything) == 198
    both_loads = {(r["user_id"], r["masked_ip"], r["masked_device_id"]) for r in everything}
    assert both_loads == first  # each value masked the same way both times


def test_a_message_delivered_again_after_its_commit_is_deleted_not_reloaded(cli, queues, db):
    """A crash between COMMIT and DeleteMessageBatch: the row exists, the message comes back."""
    cli("init-db")
    [message_id] = queues.send([json.dumps(sample_messages()[0])])
    connection = database.connect(db.url)
    row = transform.to_row(json.dumps(sample_messages()[0]), KEY, message_id, datetime.now(UTC))
    load.insert(connection, [row], schema.describe(connection))
    connection.close()

    result, summary = run_json(cli)

    assert result.exit_code == 0
    assert (summary["loaded"], summary["duplicates"]) == (0, 1)
    assert len(rows(db)) == 1
    assert queues.count() == 0


def test_two_copies_of_one_message_load_once(cli, queues, db):
    """Copies carrying the same original message id (a message replayed from the DLQ twice)."""
    cli("init-db")
    body = json.dumps(sample_messages()[1])
    original = {"loginetl-original-message-id": {"DataType": "String", "StringValue": "orig-1"}}
    queues.send([body, body], attributes=original)

    _, summary = run_json(cli)

    assert (summary["loaded"], summary["duplicates"]) == (1, 1)
    assert [r["sqs_message_id"] for r in rows(db)] == ["orig-1"]
    assert queues.count() == 0


def test_message_ids_with_escapes_round_trip_through_copy(cli, queues, db):
    """The original id comes from a message attribute, i.e. from the sender: tabs, newlines
    and backslashes in it must reach the table unchanged."""
    cli("init-db")
    hostile_id = "id\twith\\back\\slash\nand\\N"
    original = {"loginetl-original-message-id": {"DataType": "String", "StringValue": hostile_id}}
    queues.send([json.dumps(sample_messages()[0])], attributes=original)
    queues.send([json.dumps(sample_messages()[2])])

    _, summary = run_json(cli)

    assert summary["loaded"] == 2
    assert hostile_id in [r["sqs_message_id"] for r in rows(db)]


def test_max_messages_stops_after_n(cli, queues, db):
    cli("init-db")
    queues.send_sample()

    _, summary = run_json(cli, "--max-messages", "25", "--batch-size", "10")

    assert summary["received"] == 25
    assert summary["stopped_because"] == "max messages reached"
    assert summary["loaded"] + summary["dead_lettered"] == 25
    assert len(rows(db)) == summary["loaded"]
    assert queues.count() == 75


def test_without_a_dead_letter_queue_invalid_messages_stay_and_the_summary_says_so(
    sqs, database_url, db
):
    from typer.testing import CliRunner

    from loginetl.cli import app

    queues = make_queues(sqs, redrive=False)
    env = {
        "LOGINETL_QUEUE_URL": queues.url,
        "LOGINETL_DATABASE_URL": database_url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_WAIT_TIME": "0",
        "LOGINETL_CONCURRENCY": "1",
    }
    runner = CliRunner()
    runner.invoke(app, ["init-db"], env=env)
    queues.send([json.dumps(m) for m in sample_messages()[:9]] + ["not json"])

    result = runner.invoke(app, ["run", "--json"], env=env)
    summary = json.loads(result.stdout)

    assert result.exit_code == 0
    assert summary["loaded"] == 9
    assert summary["left_on_queue"] == 1
    assert list(summary["left_on_queue_by_reason"]) == [
        "invalid, and no dead-letter queue is configured or discoverable"
    ]
    assert "1 invalid messages were left on the queue" in result.stderr
    assert queues.count() == 1  # still there, nothing dropped
    assert queues.count(queues.dlq_url) == 0


def test_an_explicit_dlq_url_is_used(cli, sqs, queues, db):
    other = make_queues(sqs, redrive=False)
    cli("init-db")
    queues.send(["{broken"])

    _, summary = run_json(cli, "--dlq-url", other.dlq_url)

    assert summary["dlq_url"] == other.dlq_url
    assert queues.count(other.dlq_url) == 1
    assert queues.count(queues.dlq_url) == 0


def test_hostile_bodies_are_dead_lettered_with_reasons(cli, queues, db):
    cli("init-db")
    good = sample_messages()[0]
    hostile = [
        "[]",
        json.dumps(dict(good, user_id="a\u0000b")),
        json.dumps(dict(good, ip="1.2.3.4; DROP TABLE user_logins")),
        json.dumps(dict(good, device_type="x" * 33)),
        json.dumps(dict(good, locale="[bold red]markup[/]\x1b[2J")),
        '{"user_id": "\\ud800", "device_type": "ios"}',
        "[" * 5000 + "]" * 5000,
    ]
    queues.send([*hostile, json.dumps(good)])

    result, summary = run_json(cli)

    assert result.exit_code == 0
    assert summary["loaded"] == 1
    assert summary["dead_lettered"] == len(hostile)
    assert queues.count() == 0
    assert queues.count(queues.dlq_url) == len(hostile)
    assert "Traceback" not in result.output


def test_legacy_take_home_table_stores_the_major_version(cli, queues, db):
    with db.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE user_logins (user_id varchar(128), device_type varchar(32), "
            "masked_ip varchar(256), masked_device_id varchar(256), locale varchar(32), "
            "app_version integer, create_date date)"
        )
        cursor.execute("INSERT INTO user_logins (user_id, app_version) VALUES ('old', 1)")
    assert cli("init-db").exit_code == 0
    queues.send([json.dumps(dict(sample_messages()[0], app_version="2.3.0"))])
    queues.send([json.dumps(dict(sample_messages()[1], app_version="beta"))])

    _, summary = run_json(cli)

    assert summary["loaded"] == 1
    assert summary["dead_lettered"] == 1
    [reason] = summary["dead_lettered_by_reason"]
    assert reason.startswith("database: app_version 'beta' has no major version")
    versions = {r["user_id"]: r["app_version"] for r in rows(db, "user_id")}
    assert versions == {"old": 1, sample_messages()[0]["user_id"]: 2}


def test_run_without_init_db_is_a_configuration_error(cli, queues):
    queues.send_sample()
    result = cli("run")
    assert result.exit_code == 2
    assert "run `loginetl init-db` first" in result.stderr
    assert queues.count() == 100


def test_missing_mask_key_refuses_to_start(cli, queues):
    result = cli("run", env={"LOGINETL_MASK_KEY": ""})
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "LOGINETL_MASK_KEY is not set" in result.stderr


def test_unreachable_database_is_one_line_naming_the_host_without_the_password(cli, queues):
    queues.send_sample()
    url = "postgresql://postgres:hunter2-secret@127.0.0.1:1/postgres"
    result = cli("run", "--database-url", url, "--retry-for", "0")
    assert result.exit_code == 1
    assert "cannot connect to database 127.0.0.1:1/postgres" in result.stderr
    assert "hunter2-secret" not in result.output
    assert "Traceback" not in result.output
    assert queues.count() == 100


def test_a_queue_that_does_not_exist_is_a_configuration_error(cli, sqs_endpoint):
    cli("init-db")
    url = f"{sqs_endpoint}/123456789012/no-such-queue"
    result = cli("run", "--queue-url", url)
    assert result.exit_code == 2
    assert f"{url}: the queue does not exist" in result.stderr


def test_an_unreachable_queue_endpoint_is_one_line(cli, database_url):
    cli("init-db")
    url = "http://127.0.0.1:1/000000000000/login-queue"
    result = cli("run", "--queue-url", url, env={"AWS_MAX_ATTEMPTS": "2"})  # fewer retries
    assert result.exit_code == 1
    # The one error line names the endpoint (the outage warnings before it name it too).
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert "http://127.0.0.1:1" in error, result.stderr
    assert "Traceback" not in result.output


def test_a_bad_queue_url_is_bad_usage(cli):
    result = cli("run", "--queue-url", "login-queue")
    assert result.exit_code == 2
    assert "is not a queue URL" in result.stderr


def test_secrets_never_appear_in_output(cli, queues, password_url):
    url, password = password_url  # a role that really logs in with this password
    queues.send_sample()
    outputs = [
        (cli("init-db", "--database-url", url), 0),
        (cli("peek"), 0),  # the queue is full: peek shows (masked) messages
        (cli("run", "--max-messages", "50", "--database-url", url), 0),
        (cli("run", "--json", "--database-url", url), 0),
        (cli("run", "--retry-for", "1", "--database-url", unreachable(url)), 1),
        (cli("init-db", "--database-url", url, "--json"), 0),
        (cli("status", "--database-url", url), 0),
        # psycopg2 echoes a bad option's value: here the password itself.
        (cli("init-db", "--database-url", f"{url}?sslmode={password}"), 1),
        (cli("run", "--help"), 0),
    ]
    assert "cannot connect to database 127.0.0.1:1" in outputs[4][0].stderr
    assert "invalid sslmode value" in outputs[7][0].stderr
    assert json.loads(outputs[5][0].stdout)["row_count"] == 99  # the runs did log in and load
    for result, exit_code in outputs:
        assert result.exit_code == exit_code, result.output
        assert password not in result.output
        assert MASK_KEY not in result.output
        for message in sample_messages()[:5]:
            assert message["ip"] not in result.output
            assert message["device_id"] not in result.output


def test_flags_beat_environment_which_beats_dot_env(cli, sqs, queues, db, tmp_path):
    cli("init-db")
    from_env = make_queues(sqs)
    from_dotenv = make_queues(sqs)
    for q in (queues, from_env, from_dotenv):
        q.send([json.dumps(sample_messages()[0])])
    (tmp_path / ".env").write_text(f"LOGINETL_QUEUE_URL={from_dotenv.url}\n")

    # .env alone (the fixture's environment variable removed)
    _, summary = run_json(cli, env={"LOGINETL_QUEUE_URL": None})
    assert summary["queue_url"] == from_dotenv.url
    # environment over .env
    _, summary = run_json(cli, env={"LOGINETL_QUEUE_URL": from_env.url})
    assert summary["queue_url"] == from_env.url
    # flag over both
    _, summary = run_json(cli, "--queue-url", queues.url)
    assert summary["queue_url"] == queues.url
    assert all(q.count() == 0 for q in (queues, from_env, from_dotenv))


def test_batch_size_can_come_from_the_environment(cli, queues, db):
    cli("init-db")
    queues.send_sample()
    result, summary = run_json(
        cli,
        "--log-format",
        "json",
        env={"LOGINETL_BATCH_SIZE": "7", "LOGINETL_MAX_MESSAGES": "14"},
    )
    assert summary["received"] == 14
    sizes = [
        json.loads(line)["messages"]
        for line in result.stderr.splitlines()
        if json.loads(line)["event"] == "batch"
    ]
    assert sizes and max(sizes) <= 7 and sum(sizes) == 14


def test_the_summary_table_is_printed_without_json(cli, queues, db):
    cli("init-db")
    queues.send_sample()
    result = cli("run")
    assert result.exit_code == 0
    for label in (
        "received",
        "loaded",
        "already loaded (duplicates)",
        "dead-lettered",
        "left on queue",
        "elapsed",
        "messages/s",
    ):
        assert label in result.stdout


def test_bad_aws_retry_settings_are_bad_configuration(cli):
    for env, message in (
        ({"AWS_MAX_ATTEMPTS": "many"}, "AWS_MAX_ATTEMPTS must be a whole number"),
        ({"AWS_RETRY_MODE": "eager"}, "AWS_RETRY_MODE must be standard, adaptive or legacy"),
    ):
        result = cli("run", env=env)
        assert result.exit_code == 2
        assert message in result.stderr
