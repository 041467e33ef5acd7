"""The operator surface: global options anywhere, JSON-clean service logs, nothing cut at 80
columns, shell completion. Through the real CLI, against the real servers."""

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from loginetl.cli import app
from loginetl.cli.app import hoist
from tests.support.data import MASK_KEY, rows, sample_messages
from tests.support.faults import start_loginetl, wait_until
from tests.support.runs import env_for, init

COMMANDS = [
    "init-db",
    "run",
    "peek",
    "replay-dlq",
    "verify-masking",
    "status",
    "lookup",
    "erase",
    "unmask",
    "rekey",
    "prune",
]
GLOBAL = {"--log-format": True, "--log-level": True}


def json_lines(text: str) -> list[dict]:
    """Every line a JSON object (the assertion fails on the first that is not)."""
    return [json.loads(line) for line in text.splitlines()]


# --- global options before or after the command ------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--log-format", "json"], ["--log-format", "json", "run"]),
        (["run", "--follow", "--log-level=info"], ["--log-level=info", "run", "--follow"]),
        (["--log-level", "info", "peek", "--json"], ["--log-level", "info", "peek", "--json"]),
        (["peek", "--", "--log-format", "json"], ["peek", "--", "--log-format", "json"]),
        (["run", "--max-messages", "5"], ["run", "--max-messages", "5"]),
        ([], []),
    ],
)
def test_global_options_after_the_command_move_before_it(args, expected):
    assert hoist(args, GLOBAL) == expected


@pytest.mark.parametrize("where", ["before", "after"])
def test_the_service_example_works_with_the_option_on_either_side(cli, queues, db, where):
    cli("init-db")
    queues.send([json.dumps(message) for message in sample_messages()[:5]])
    args = ["run", "--json"]
    args = ["--log-format", "json", *args] if where == "before" else [*args, "--log-format", "json"]

    result = cli(*args)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loaded"] == 5
    events = [entry["event"] for entry in json_lines(result.stderr)]
    assert events[0] == "start" and events[-1] == "stop" and "batch" in events
    assert len(rows(db)) == 5


def test_a_global_option_with_a_bad_value_after_the_command_is_a_usage_error(cli):
    result = cli("status", "--log-level", "loud")
    assert result.exit_code == 2
    assert "loud" in result.output and "--log-level" in result.output


def test_every_command_help_names_the_global_options():
    for command in COMMANDS:
        result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "80"})
        assert result.exit_code == 0, result.output
        assert "--log-format, --log-level" in " ".join(result.stdout.split())


# --- JSON logs: every line a JSON object -------------------------------------------------------


def test_json_logs_make_every_line_of_a_run_json_with_start_and_stop(queues, database_url, db):
    queues.send([json.dumps(message) for message in sample_messages()])  # 99 valid, 1 not
    env = env_for(queues.url, database_url)
    init(database_url)

    process = start_loginetl("run", "--log-format", "json", env=env)
    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    (result,) = json_lines(stdout)  # the result, one line
    assert result["loaded"] == 99 and result["dead_lettered"] == 1
    entries = json_lines(stderr)
    start, stop = entries[0], entries[-1]
    assert start["event"] == "start" and start["level"] == "info"
    assert start["queue_url"] == queues.url
    assert start["database"].endswith("/" + database_url.rsplit("/", 1)[1])
    assert start["options"]["batch_size"] == 500 and len(start["mask_key_id"]) == 16
    assert stop["event"] == "stop" and stop["exit_code"] == 0
    assert stop["stopped_because"] == "queue drained" and stop["summary"]["loaded"] == 99
    assert any(entry["event"] == "batch" for entry in entries)  # the default level shows them
    everything = stdout + stderr
    assert MASK_KEY not in everything
    for message in sample_messages():
        if "ip" in message:
            assert message["ip"] not in everything


def test_json_logs_report_a_failure_as_json_with_its_exit_code(queues):
    env = env_for(queues.url, "postgresql://postgres@127.0.0.1:1/none", LOGINETL_RETRY_FOR="0")

    process = start_loginetl("--log-format", "json", "run", env=env)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 1
    entries = json_lines(stdout) + json_lines(stderr)
    errors = [entry for entry in entries if entry.get("event") == "error"]
    assert errors and "cannot connect to database 127.0.0.1:1" in errors[0]["message"]
    stop = [entry for entry in entries if entry.get("event") == "stop"]
    assert stop and stop[0]["exit_code"] == 1


@pytest.mark.parametrize("level", ["warning", "info", "debug"])
def test_a_failed_run_says_its_error_in_one_line_whatever_the_log_level(queues, level):
    env = env_for(queues.url, "postgresql://postgres@127.0.0.1:1/none", LOGINETL_RETRY_FOR="0")

    process = start_loginetl("--log-level", level, "run", env=env)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 1
    errors = [line for line in stderr.splitlines() if "ERROR" in line or "Error:" in line]
    assert len(errors) == 1 and "cannot connect to database 127.0.0.1:1" in errors[0], stderr


def test_a_successful_erase_logs_its_audit_event_at_info_shown_by_default(cli, queues):
    assert cli("init-db").exit_code == 0
    login = next(message for message in sample_messages() if "user_id" in message)
    queues.send([json.dumps(login)])
    assert cli("run").exit_code == 0

    result = cli("erase", "--user-id", login["user_id"], "--yes")

    assert result.exit_code == 0, result.output
    (event,) = [line for line in result.stderr.splitlines() if "erase: deleted 1 rows" in line]
    assert " INFO " in event and "WARNING" not in result.stderr


def test_json_logs_write_a_usage_error_as_one_json_line(queues):
    process = start_loginetl("run", "--no-such-option", "--log-format", "json", env={})
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2
    assert stdout == ""
    (entry,) = json_lines(stderr)
    assert entry["event"] == "usage_error" and "--no-such-option" in entry["message"]


def test_a_follower_logs_start_batches_and_stop_at_the_default_level(queues, database_url, db):
    env = env_for(queues.url, database_url)
    init(database_url)
    process = start_loginetl("run", "--follow", "--log-format", "json", env=env)
    try:
        queues.send([json.dumps(message) for message in sample_messages()[:5]])
        wait_until(lambda: len(rows(db)) == 5, timeout=60)
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr
    events = [entry["event"] for entry in json_lines(stderr)]
    assert events[0] == "start" and events[-1] == "stop"
    assert "batch" in events and "signal" in events
    (result,) = json_lines(stdout)
    assert result["stopped_because"] == "stopped by signal"


# --- 80 columns: nothing cut ---------------------------------------------------------------------

WIDTHS = [80, 200]


def words(text: str) -> list[str]:
    """The words of `text`, with table borders and line breaks gone."""
    return re.sub(r"[│┃┏┓┗┛┡┩└┘├┤┬┴┼╇╈┳┻━─═┌┐╭╮╰╯]", " ", text).split()


def assert_whole(needle: str, output: str) -> None:
    """Every word of `needle` appears in `output`, whole and in order, though table cells may
    have wrapped it across lines (with other columns' words in between)."""
    shown = iter(words(output))
    for word in needle.split():
        assert any(word == candidate for candidate in shown), (word, needle)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_run_summary_wraps_a_long_reason_instead_of_cutting_it(cli, queues, width):
    cli("init-db")
    queues.send_sample()  # one message misses five fields: a long reason

    result = cli("run", env={"COLUMNS": str(width)})

    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= width
    reason = (
        "schema: missing required field 'user_id', 'device_type', 'ip', 'device_id', 'app_version'"
    )
    assert_whole(reason, result.stdout)


@pytest.mark.parametrize("width", WIDTHS)
def test_peek_shows_message_ids_and_sent_times_whole(cli, queues, width):
    ids = queues.send([json.dumps(message) for message in sample_messages()[:3]])

    result = cli("peek", env={"COLUMNS": str(width)})
    peeked = json.loads(cli("peek", "--json").stdout)["messages"]

    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= width
    for message_id in ids:
        assert message_id in result.stdout  # on one line, not folded
    for message in peeked:
        assert message["sent_at"] in result.stdout


def test_titles_stay_on_one_line_and_urls_break_only_after_a_slash_at_80_columns(
    cli, queues, database_url
):
    assert cli("init-db").exit_code == 0
    queues.send(["not json"])
    assert cli("run").exit_code == 0
    columns = {"COLUMNS": "80"}
    database = database_url.rsplit("/", 1)[1]

    erase = cli("erase", "--user-id", "nobody", env=columns).stdout
    title = f"erase (counted only: --yes deletes) on 127.0.0.1:5432/{database}"
    assert title in erase.splitlines()[0]
    status = cli("status", env=columns).stdout
    assert any(
        f"table user_logins on 127.0.0.1:5432/{database}" in line for line in status.splitlines()
    )
    replay = cli("replay-dlq", "--dry-run", env=columns).stdout
    for output in (status, replay):
        assert max(len(line) for line in output.splitlines()) <= 80
        for url in (queues.url, queues.dlq_url):
            # Each part of the URL between slashes is whole on some line.
            for part in url.split("/")[2:]:
                assert any(
                    f"{part}/" in line or line.rstrip(" │").endswith(part)
                    for line in output.splitlines()
                ), (part, output)


@pytest.mark.parametrize("width", WIDTHS)
def test_init_db_lists_every_column_readably(cli, width):
    result = cli("init-db", env={"COLUMNS": str(width)})

    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= width
    for column in ("user_id", "masked_device_id", "sqs_message_id", "loaded_at"):
        assert any(re.search(rf"\b{column}\b", line) for line in lines)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("command", [[], *([name] for name in COMMANDS)])
def test_help_wraps_at_any_width_and_cuts_nothing(command, width):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": str(width)})

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "…" not in text and "..." not in text.replace("[ARGS]...", "")
    assert max(len(line) for line in text.splitlines()) <= width
    shown = words(text)
    group = get_command(app)
    params = group.commands[command[0]].params if command else group.params
    for param in params:
        for word in (param.help or "").split():
            assert word in shown, (param.name, word)
        for flag in param.opts:
            assert flag in shown


# --- status ------------------------------------------------------------------------------------


def test_status_shows_queues_table_and_what_looks_wrong_without_consuming(cli, queues, db):
    cli("init-db")
    queues.send_sample()
    cli("run", "--max-messages", "20", env={"LOGINETL_BATCH_SIZE": "10"})
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE user_logins SET mask_key_id = 'retiredkey000000' "
            "WHERE sqs_message_id IN (SELECT sqs_message_id FROM user_logins LIMIT 3)"
        )
    queues.send(["{not json"], queue_url=queues.dlq_url)
    before = (queues.count(), queues.count(queues.dlq_url))

    result = cli("status", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["queue"]["url"] == queues.url
    assert report["queue"]["visible"] + report["queue"]["in_flight"] == before[0]
    assert report["dlq"]["url"] == queues.dlq_url and report["dlq"]["visible"] >= 1
    assert report["dlq"]["reasons"]
    table, loaded = report["table"], len(rows(db))
    assert table["exists"] and table["rows"] == loaded >= 19 and table["last_loaded_at"]
    assert table["mask_key_ids"]["retiredkey000000"] == 3
    assert sum(table["mask_key_ids"].values()) == loaded
    problems = " ".join(report["problems"])
    assert "dead-letter queue holds" in problems and "retiredkey000000" in problems
    wait_until(lambda: (queues.count(), queues.count(queues.dlq_url)) == before)  # nothing consumed
    assert len(rows(db)) == loaded

    shown = cli("status", env={"COLUMNS": "80"})
    assert shown.exit_code == 0 and "…" not in shown.stdout
    assert_whole("retiredkey000000", shown.stdout)


def test_status_without_a_dead_letter_queue_or_table_says_so(cli, sqs):
    url = sqs.create_queue(QueueName=f"plain-{os.getpid()}-{id(sqs)}")["QueueUrl"]

    result = cli("status", "--json", env={"LOGINETL_QUEUE_URL": url})

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dlq"] is None and report["table"]["exists"] is False
    problems = " ".join(report["problems"])
    assert "no dead-letter queue" in problems and "loginetl init-db" in problems


def test_status_exits_1_when_a_server_cannot_be_reached_and_shows_the_rest(cli, queues):
    result = cli(
        "status", "--json", env={"LOGINETL_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    )

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["queue"]["url"] == queues.url  # the queue side still shown
    assert "cannot connect to database 127.0.0.1:1" in report["errors"][0]
    assert result.stderr.count("\n") == 1 and "Error:" in result.stderr


# --- shell completion --------------------------------------------------------------------------


def test_shell_completion_completes_commands_and_options(tmp_path):
    loginetl = os.path.join(os.path.dirname(sys.executable), "loginetl")
    # --show-completion prints the script for the shell it is run from (found among its parent
    # processes): here bash, kept as the parent by the command after it.
    script = subprocess.run(
        ["bash", "-c", f"{loginetl} --show-completion; true"], capture_output=True, text=True
    )
    assert script.returncode == 0, script.stderr
    assert "_loginetl_completion" in script.stdout and "complete -o" in script.stdout

    complete = os.environ | {"_LOGINETL_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    commands = subprocess.run(
        [loginetl], capture_output=True, text=True, env=complete | {"COMP_WORDS": "loginetl st"}
    )
    assert commands.stdout.split() == ["status"]
    options = subprocess.run(
        [loginetl],
        capture_output=True,
        text=True,
        env=complete | {"COMP_WORDS": "loginetl run --max", "COMP_CWORD": "2"},
    )
    assert options.stdout.split() == ["--max-messages"]


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    from loginetl.stack.cli import app as stack_app

    for command in (app, stack_app):
        result = CliRunner().invoke(command, ["--version"])
        assert (result.exit_code, result.stdout) == (0, version("loginetl") + "\n")
