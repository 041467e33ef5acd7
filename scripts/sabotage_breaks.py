"""The breaks `scripts/sabotage.py` applies, one at a time, to a scratch copy of the tree.

Each break is data: the guarantee (the row of docs/guarantees.md, word for word), what it breaks,
the file under loginetl/, an exact snippet that must occur exactly once there, its replacement,
and the pytest node ids that page cites as proof of that guarantee.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Break:
    guarantee: str
    description: str
    file: str
    find: str
    replace: str
    tests: tuple[str, ...]


DELETE_AFTER_COMMIT = (
    "A message is deleted from the source only after its row is committed, or after the DLQ "
    "accepted it."
)
AT_MOST_ONCE = "A message is loaded at most once, however often it is delivered."
KILL_9 = "`kill -9` at any moment loses nothing and doubles nothing after a restart."
DLQ_COPIES = (
    "A crash between dead-lettering and deleting may leave two copies in the DLQ; they are one "
    "message."
)
DATABASE_OUTAGE = (
    "A database outage is waited out for `--retry-for` seconds (default 300), then the run exits "
    "1; nothing uncommitted is deleted, and the batch in hand is made visible again."
)
SQS_OUTAGE = (
    "An SQS outage exits 1 with one line naming the endpoint, after botocore's retries; "
    "committed rows are deleted from the queue by the next run."
)
UNREACHABLE = (
    "A run that cannot reach an end says so at once and while it waits: at start the database "
    "and the SQS endpoint (for a stream, the dead-letter queue's and Kinesis's) are reached side "
    "by side, and each one unreachable is named in a warning of its own at once; while the "
    "database is waited for, one line every 30 s says since when and until when; a dead SQS or "
    "Kinesis endpoint still exits 1 after botocore's retries, without waiting out the database."
)
THROTTLING = "Throttling (`RequestThrottled`, 5xx) slows a run down; it does not fail it."
SLOW_BATCH = "A slow batch keeps its messages from other consumers."
SIGNALS = (
    "SIGINT/SIGTERM finish the batch in hand and exit 0; a second signal exits at once, still "
    "safely."
)
REFUSED_ROW = "One row the database refuses does not sink its batch."
HOSTILE = "Hostile input is loaded or dead-lettered with a reason, never a crash or a traceback."
CONSUMERS = "Several `loginetl run` processes on one queue load every message exactly once."
SECRETS = (
    "The mask key, database passwords and raw ip/device_id never appear in output, logs or errors."
)


ENVELOPES = (
    "An SNS notification or an EventBridge event is opened and its login loaded; an envelope "
    "that cannot be opened, an envelope inside another and an SNS subscription confirmation are "
    "dead-lettered with a reason starting `envelope:`, never loaded and never confirmed."
)
NOT_ACCEPTED = (
    "A message the `--accept` rules refuse is dead-lettered with its reason unless "
    "`--on-other delete` is given: never dropped silently."
)
ENVELOPE_TESTS = (
    "tests/test_envelopes_sns.py::test_a_topics_messages_load_with_or_without_raw_delivery",
    "tests/test_envelopes_sns.py::"
    "test_an_eventbridge_event_and_hostile_envelopes_on_the_same_queue",
)
NOT_ACCEPTED_TEST = (
    "tests/test_envelopes_sns.py::test_other_event_types_are_skipped_never_dropped_silently"
)

PRECEDENCE = (
    "A flag beats the environment, which beats `.env`: a queue URL typed is never sent to the "
    "server a lower-precedence endpoint names, and a queue URL and an endpoint from one place "
    "that name different servers stop the command (exit 2), naming both."
)
PRECEDENCE_TESTS = (
    "tests/test_precedence.py::"
    "test_the_report_a_typed_queue_url_is_not_sent_to_the_dotenv_endpoint",
)

POSTGRES_CRASH = (
    "PostgreSQL crashing under load (`pg_ctl stop -m immediate`, twice, while `run --follow` "
    "loads a backlog) loses nothing and doubles nothing; the process never exits, `/healthz` "
    "answers 503 during each outage and 200 after, and each outage is one warning when it "
    "starts and one when it ends, with how long it lasted (the retries in between only at "
    "`--log-level debug`; an outage longer than 30 s is also one line every 30 s, as below)."
)
CERTIFICATE = "A server certificate that does not verify is not an outage: one line naming the database and the problem, exit 1 at once, never retried for `--retry-for`."
CRASH_TEST = (
    "tests/test_postgres_crash.py::"
    "test_postgres_crashing_twice_under_load_loses_and_doubles_nothing"
)
CERTIFICATE_TEST = (
    "tests/test_tls.py::test_a_certificate_that_does_not_verify_is_one_line_exit_1_never_retried"
)


FAULTS = "tests/test_faults.py::"
RUN = "tests/test_cli_run.py::"
OUTAGE_TEST = FAULTS + "test_a_database_outage_mid_batch_is_retried_and_nothing_is_lost"
GIVE_UP_TEST = FAULTS + "test_the_run_gives_up_after_retry_for_and_leaves_the_messages"
SAMPLE_TEST = RUN + "test_the_sample_loads_99_rows_and_dead_letters_1"
REDELIVERED_TEST = RUN + "test_a_message_delivered_again_after_its_commit_is_deleted_not_reloaded"
TWO_COPIES_TEST = RUN + "test_two_copies_of_one_message_load_once"
KILL_TEST = FAULTS + "test_kill_9_at_random_points_loses_nothing_and_loads_nothing_twice"
SIGNAL_TESTS = (
    FAULTS + "test_sigterm_finishes_the_batch_in_hand_and_exits_0",
    FAULTS + "test_a_second_signal_exits_at_once_without_deleting_anything",
)
UNREACHABLE_TESTS = tuple(
    "tests/test_unreachable.py::" + name
    for name in (
        "test_a_run_that_reaches_neither_end_names_both_at_once_and_exits_1",
        "test_the_wait_for_a_database_is_said_every_interval_with_since_and_until",
        "test_a_database_back_after_a_wait_at_start_is_loaded_into_and_the_end_said",
        "test_a_stream_run_names_the_database_the_dead_letter_queue_and_kinesis_at_once",
    )
)
SQS_TESTS = (
    FAULTS + "test_an_sqs_outage_after_commit_leaves_messages_that_a_rerun_deletes",
    RUN + "test_an_unreachable_queue_endpoint_is_one_line",
)
SECRET_TESTS = (
    "tests/test_secrets_every_command.py::test_no_command_shows_a_secret_working_or_failing",
    "tests/test_hostile_input.py::test_logs_and_errors_never_show_secrets_or_raw_pii",
    RUN + "test_secrets_never_appear_in_output",
    "tests/unit/test_masking.py::test_a_cli_error_line_after_the_key_is_built_never_shows_it",
)
DLQ_REFUSES_TEST = (
    "tests/test_failure_branches.py::"
    "test_a_message_the_dead_letter_queue_refuses_stays_on_the_source_queue"
)
DLQ_ENTRY_TEST = (
    "tests/test_dead_letter_answers.py::"
    "test_a_dead_letter_entry_sqs_does_not_confirm_stays_on_the_source_queue"
)
PARTITIONED = "tests/test_partitioned_paths.py::"
PARTITIONED_REDELIVERED_TEST = (
    PARTITIONED + "test_a_message_delivered_again_after_its_commit_is_a_duplicate_deleted"
)
PARTITIONED_REFUSED_TESTS = (
    PARTITIONED + "test_a_row_the_database_refuses_is_dead_lettered_alone_with_its_reason",
    PARTITIONED + "test_a_refused_row_replayed_stays_dead_lettered_until_fixed_then_loads_once",
)
# The per-entry check of a SendMessageBatch answer (sqs.send_entries): what is in `Failed`,
# and what is in neither list, is not sent.
PER_ENTRY_CHECK = """\
    not_sent = {
        int(entry["Id"]): redact(f"{entry.get('Code', '')}: {entry.get('Message', '')}")
        for entry in response.get("Failed", [])
    }
    acknowledged = {int(entry["Id"]) for entry in response.get("Successful", [])}
    for index in indexes:
        if index not in acknowledged and index not in not_sent:
            not_sent[index] = "not acknowledged by SQS"
    return not_sent
"""

LOAD_CALL = """        result = self.db.call(  # committed on return
"""
DELETE_BEFORE_COMMIT = """\
        from .. import sqs  # SABOTAGE: the batch's valid messages deleted before COMMIT
        sqs.delete(self.settlers.source.sqs, self.settlers.source.url,
                       [m for copies in by_origin.values() for m in copies])
        result = self.db.call(  # committed on return
"""
GIVE_BACK = "        self.release(shared.in_hand + shared.leftover + self._empty_inbox())\n"

BREAKS: tuple[Break, ...] = (
    Break(
        DELETE_AFTER_COMMIT,
        "delete the batch from SQS before the insert commits",
        "pipeline/loading.py",
        LOAD_CALL,
        DELETE_BEFORE_COMMIT,
        (OUTAGE_TEST, SAMPLE_TEST),
    ),
    Break(
        DELETE_AFTER_COMMIT,
        "delete the messages the DLQ refused (send failure treated as sent)",
        "pipeline/settling.py",
        '{failure.error}")\n        return sent\n',
        '{failure.error}")\n'
        "        return sent + [failure.message for failure in failed]  # SABOTAGE\n",
        (OUTAGE_TEST, SAMPLE_TEST, DLQ_REFUSES_TEST, DLQ_ENTRY_TEST),
    ),
    Break(
        DELETE_AFTER_COMMIT,
        "a refused message is deleted as dead-lettered, never sent to the DLQ",
        "pipeline/settling.py",
        "        sent, failed = sqs.dead_letter("
        "self.source.sqs, dlq_url, self.source.url, refused)\n",
        "        sent, failed = [message for message, _ in refused], []  # SABOTAGE: not sent\n",
        (SAMPLE_TEST, DLQ_REFUSES_TEST, OUTAGE_TEST),
    ),
    Break(
        DELETE_AFTER_COMMIT,
        "drop the per-entry DLQ check (a 200 SendMessageBatch answer taken as all sent)",
        "sqs.py",
        PER_ENTRY_CHECK,
        "    return {}  # SABOTAGE: every entry of a 200 answer taken for sent\n",
        (DLQ_ENTRY_TEST,),
    ),
    Break(
        AT_MOST_ONCE,
        "drop ON CONFLICT (sqs_message_id) DO NOTHING from the insert",
        "load.py",
        '"ON CONFLICT (sqs_message_id) DO NOTHING RETURNING sqs_message_id"',
        '"RETURNING sqs_message_id"  # SABOTAGE: no ON CONFLICT',
        (REDELIVERED_TEST, TWO_COPIES_TEST),
    ),
    Break(
        AT_MOST_ONCE,
        "partitioned: rows inserted whether or not their id was claimed before",
        "load.py",
        "        values = [v for v in values if v[MESSAGE_ID] in new_ids]\n",
        "        pass  # SABOTAGE: the claim of the ids ignored\n",
        (PARTITIONED_REDELIVERED_TEST,),
    ),
    Break(
        KILL_9,
        "delete each message as soon as it is received (ack on receipt)",
        "pipeline/receiving.py",
        "            self.source.keeper.hold(received)\n",
        "            self.source.keeper.hold(received)\n"
        "            sqs.delete(self.source.sqs, self.source.url, received)  # SABOTAGE\n",
        (KILL_TEST,),
    ),
    Break(
        KILL_9,
        "delete the batch from SQS before the insert commits",
        "pipeline/loading.py",
        LOAD_CALL,
        DELETE_BEFORE_COMMIT,
        (KILL_TEST,),
    ),
    Break(
        DLQ_COPIES,
        "key rows by the delivery's message id, ignoring loginetl-original-message-id",
        "sqs.py",
        "        return self.attributes.get(ORIGINAL_ID_ATTRIBUTE) or self.message_id\n",
        "        return self.message_id  # SABOTAGE: the original id is ignored\n",
        (
            "tests/test_cli_replay_dlq.py::"
            "test_two_dlq_copies_of_one_message_load_once_after_replay",
            TWO_COPIES_TEST,
        ),
    ),
    Break(
        DATABASE_OUTAGE,
        "no retry on a database outage (--retry-for ignored)",
        "database.py",
        "        deadline = time.monotonic() + self.retry_for\n",
        "        deadline = time.monotonic()  # SABOTAGE: --retry-for ignored\n",
        (OUTAGE_TEST, GIVE_UP_TEST),
    ),
    Break(
        DATABASE_OUTAGE,
        "the batch in hand is not made visible again when the run gives up",
        "pipeline/giving_back.py",
        GIVE_BACK,
        "        self.release(shared.leftover + self._empty_inbox())  # SABOTAGE: in_hand kept\n",
        (OUTAGE_TEST, GIVE_UP_TEST),
    ),
    Break(
        UNREACHABLE,
        "the other ends are checked only once the database answered",
        "pipeline/reaching.py",
        "    for thread in threads:\n        thread.start()\n"
        "    try:\n        result = db.call(work, action)\n",
        "    try:\n        result = db.call(work, action)  # SABOTAGE: one end after the other\n"
        "        for thread in threads:\n            thread.start()\n",
        UNREACHABLE_TESTS,
    ),
    Break(
        UNREACHABLE,
        "an outage is silent between its first line and its last",
        "outages.py",
        "        if now < self.next_line:\n            return\n",
        "        if True:  # SABOTAGE: no line while it lasts\n            return\n",
        UNREACHABLE_TESTS,
    ),
    Break(
        SQS_OUTAGE,
        "an unreachable SQS endpoint's error line no longer names queue or endpoint",
        "sqs.py",
        '        raise QueueError(redact(f"{action} {queue_url}: {error}")) from None\n',
        '        raise QueueError(f"{action} the queue: {type(error).__name__}")  # SABOTAGE\n',
        SQS_TESTS,
    ),
    Break(
        SQS_OUTAGE,
        "the next run does not delete messages already committed (duplicates stay)",
        "pipeline/loading.py",
        "            done += messages  # erased ones too: deleted from SQS, never loaded again\n",
        "            done += messages if origin_id in result.inserted else []"
        "  # SABOTAGE: duplicates stay\n",
        SQS_TESTS,
    ),
    Break(
        THROTTLING,
        "botocore retries off (one attempt: the first refusal fails the call)",
        "sqs.py",
        '    return {"mode": mode, "total_max_attempts": int(attempts)}\n',
        '    return {"mode": mode, "total_max_attempts": 1}  # SABOTAGE: no retries\n',
        (FAULTS + "test_throttling_slows_the_run_down_but_does_not_fail_it",),
    ),
    Break(
        SLOW_BATCH,
        "VisibilityKeeper never extends (ChangeMessageVisibilityBatch not sent)",
        "sqs.py",
        "                failures = change_visibility("
        "self.client, self.queue_url, due, self.timeout)\n",
        "                failures = []  # SABOTAGE: the visibility is never extended\n",
        (FAULTS + "test_a_slow_batch_keeps_its_messages_from_other_consumers",),
    ),
    Break(
        SIGNALS,
        "give back nothing when the run stops (inbox and leftovers stay invisible)",
        "pipeline/giving_back.py",
        GIVE_BACK,
        "        pass  # SABOTAGE: nothing is given back\n",
        SIGNAL_TESTS,
    ),
    Break(
        SIGNALS,
        "the first signal exits at once (the batch in hand is not finished)",
        "cli/run.py",
        "        if stop.is_set():\n            os._exit(128 + signum)\n",
        "        os._exit(128 + signum)  # SABOTAGE: no finishing the batch\n",
        SIGNAL_TESTS,
    ),
    Break(
        SIGNALS,
        "the work runs in the main thread (a second signal waits for the database)",
        "cli/run.py",
        "    outcome: dict = {}\n",
        "    return work()  # SABOTAGE: no worker thread\n    outcome: dict = {}\n",
        SIGNAL_TESTS,
    ),
    Break(
        REFUSED_ROW,
        "row-by-row fallback removed: a refused row fails the whole batch",
        "load.py",
        "        inserted = _insert_one_by_one(\n",
        "        raise  # SABOTAGE: no row-by-row retry\n        inserted = (\n",
        (
            FAULTS + "test_a_row_the_database_refuses_is_dead_lettered_and_the_rest_load",
            *PARTITIONED_REFUSED_TESTS,
        ),
    ),
    Break(
        REFUSED_ROW,
        "partitioned: a refused row's id stays claimed (its replay taken for a duplicate)",
        "load.py",
        '                cursor.execute("ROLLBACK TO SAVEPOINT one_row")\n',
        '                cursor.execute("ROLLBACK TO SAVEPOINT one_row")\n'
        "                if table.partitioned:  # SABOTAGE: the claim outlives the refused row\n"
        '                    cursor.execute(f"INSERT INTO {LOADED_IDS} VALUES (%s)",\n'
        "                                   (row_values[MESSAGE_ID],))\n",
        PARTITIONED_REFUSED_TESTS,
    ),
    Break(
        HOSTILE,
        "nesting depth not caught (RecursionError escapes)",
        "transform.py",
        "    except RecursionError:\n"
        '        raise InvalidMessage("json: nested too deeply") from None\n',
        "",
        ("tests/test_hostile_input.py",),
    ),
    Break(
        HOSTILE,
        "JSON numbers parsed as int/float, not kept as text",
        "transform.py",
        '    "parse_int": JsonNumber,\n    "parse_float": JsonNumber,\n',
        "    # SABOTAGE: numbers parsed as int and float\n",
        ("tests/test_hostile_input.py",),
    ),
    Break(
        HOSTILE,
        "length limits not enforced (values longer than their column pass validation)",
        "transform.py",
        "    if len(value) > MAX_LENGTH[name]:\n",
        "    if False:  # SABOTAGE: lengths unchecked\n",
        ("tests/test_hostile_input.py",),
    ),
    Break(
        CONSUMERS,
        "receive with VisibilityTimeout 0: every consumer sees every message",
        "pipeline/receiving.py",
        "received = sqs.receive(self.source.sqs, self.source.url, wanted, options.wait_time)\n",
        "received = sqs.receive(  # SABOTAGE\n"
        "                    self.source.sqs, self.source.url, wanted, options.wait_time, 0\n"
        "                )\n",
        (FAULTS + "test_two_consumers_load_every_message_exactly_once",),
    ),
    Break(
        SECRETS,
        "redaction disabled: redact() returns the text unchanged",
        "config.py",
        "    for secret in sorted(_secrets, key=len, reverse=True):\n"
        '        text = text.replace(secret, "***")\n',
        "    pass  # SABOTAGE: nothing is redacted\n",
        SECRET_TESTS,
    ),
    Break(
        SECRETS,
        "secrets not remembered (remember_secret drops them)",
        "config.py",
        "        _secrets.add(value)\n",
        "        pass  # SABOTAGE: secrets not remembered\n",
        SECRET_TESTS,
    ),
    Break(
        SECRETS,
        "peek shows ip and device_id raw without --show-pii",
        "peek.py",
        '            text = key.mask(text) if key else "***"\n',
        "            pass  # SABOTAGE: not masked\n",
        SECRET_TESTS,
    ),
    Break(
        CERTIFICATE,
        "a certificate that does not verify is reported without its reason",
        "database.py",
        'f"cannot connect to database {location}: TLS: {_tls_reason(redact(tls[0]))}"',
        'f"cannot connect to database {location}"  # SABOTAGE: the reason dropped',
        (CERTIFICATE_TEST,),
    ),
    Break(
        POSTGRES_CRASH,
        "every retry of an outage logs a warning (not one when it starts)",
        "database.py",
        "        if self.outage is None:\n            self.outage = Outage(",
        "        if True:  # SABOTAGE: a warning each retry\n            self.outage = Outage(",
        (CRASH_TEST,),
    ),
    Break(
        ENVELOPES,
        "envelopes never recognised: every body read as a raw login",
        "envelopes.py",
        "    if isinstance(body, bytes):\n",
        "    return False  # SABOTAGE: no envelope is ever opened\n    if isinstance(body, bytes):\n",
        ENVELOPE_TESTS,
    ),
    Break(
        ENVELOPES,
        "an SNS subscription confirmation is not refused as such (opened if its Type passes)",
        "envelopes.py",
        "    if kind in SNS_NOT_LOGINS:\n",
        "    if False:  # SABOTAGE: confirmations opened as notifications\n",
        ENVELOPE_TESTS,
    ),
    Break(
        NOT_ACCEPTED,
        "what the --accept rules refuse is always deleted, whatever --on-other says",
        "pipeline/loading.py",
        "                    if options.delete_others:\n",
        "                    if True:  # SABOTAGE: refused events dropped\n",
        (NOT_ACCEPTED_TEST,),
    ),
    Break(
        PRECEDENCE,
        "let .env beat the flag: a line of .env ranks above the command line",
        "config.py",
        "    DOTENV = 1  # a line of .env in the working directory\n",
        "    DOTENV = 9  # SABOTAGE: .env above the command line\n",
        PRECEDENCE_TESTS,
    ),
)
