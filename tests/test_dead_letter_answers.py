"""SendMessageBatch to the dead-letter queue is checked entry by entry: an HTTP front between
loginetl and moto answers 200 for the batch but does not confirm one entry, which must then stay
on the source queue, neither deleted nor loaded, and be reported.

moto itself never fails a single entry (it refuses the whole request, which the refusal path of
sqs.send_entries handles and test_failure_branches.py proves), so without the front nothing
reaches the per-entry check of the answer: its `Failed` list, and an entry in neither list.
"""

import json

import pytest

from tests.support.data import rows
from tests.support.faults import RecordingSqs, wait_until
from tests.support.runs import env_for, init, invoke, logins, visible
from tests.support.servers import make_queues

VALID = logins(3, "answered")
NOT_CONFIRMED = "not json: the dead-letter queue does not confirm this one"
TAKEN = "not json: the dead-letter queue takes this one"
INTERNAL = {"Code": "InternalError", "Message": "We encountered an internal error."}


class UnconfirmedEntry:
    """The front's rewrites: the SendMessageBatch entry carrying `body` never reaches the server
    (SQS did not take it) and, in the 200 answer, is in `Failed` (fate "failed") or in neither
    `Successful` nor `Failed` (fate "unanswered")."""

    def __init__(self, body: str, fate: str) -> None:
        self.body, self.fate = body, fate
        self.spoiled = 0  # answers rewritten

    def _ids(self, request: bytes) -> list[str]:
        entries = json.loads(request)["Entries"]
        return [entry["Id"] for entry in entries if entry["MessageBody"] == self.body]

    def rewrite(self, action: str, body: bytes) -> bytes:
        if action != "SendMessageBatch" or not self._ids(body):
            return body
        request = json.loads(body)
        request["Entries"] = [e for e in request["Entries"] if e["MessageBody"] != self.body]
        return json.dumps(request).encode()

    def answer(self, action: str, request: bytes, answer: bytes) -> bytes:
        ids = self._ids(request) if action == "SendMessageBatch" else []
        if not ids:
            return answer
        self.spoiled += 1
        parsed = json.loads(answer)
        if self.fate == "failed":
            parsed["Failed"] = parsed.get("Failed", []) + [
                dict(INTERNAL, Id=entry_id, SenderFault=False) for entry_id in ids
            ]
        return json.dumps(parsed).encode()


# Why the run says each fate's message was left: the answer's own words, or that SQS said none.
WHY = {
    "failed": f"{INTERNAL['Code']}: {INTERNAL['Message']}",
    "unanswered": "not acknowledged by SQS",
}


@pytest.mark.parametrize("fate", sorted(WHY))
def test_a_dead_letter_entry_sqs_does_not_confirm_stays_on_the_source_queue(
    sqs, sqs_endpoint, database_url, db, fate
):
    init(database_url)
    queues = make_queues(sqs, visibility_timeout=1)
    ids = queues.send([*VALID, NOT_CONFIRMED, TAKEN])
    spoiler = UnconfirmedEntry(NOT_CONFIRMED, fate)
    front = RecordingSqs(sqs_endpoint, rewrite=spoiler.rewrite, answer=spoiler.answer)
    try:
        env = env_for(queues.url.replace(sqs_endpoint, front.url), database_url)
        result = invoke(env, "run", "--json")
    finally:
        front.close()

    assert result.exit_code == 0, result.output
    assert spoiler.spoiled == 1 and front.actions["SendMessageBatch"] == 1
    summary = json.loads(result.stdout)
    assert (summary["loaded"], summary["dead_lettered"], summary["left_on_queue"]) == (3, 1, 1)
    assert summary["left_on_queue_by_reason"] == {f"dead-letter queue refused it: {WHY[fate]}": 1}
    assert "invalid messages were left on the queue" in result.stderr
    assert sorted(row["sqs_message_id"] for row in rows(db)) == sorted(ids[:3])
    # The dead-letter queue holds the entry it confirmed, the source queue the other one.
    [dead] = queues.drain(queues.dlq_url)
    assert dead["Body"] == TAKEN
    assert dead["MessageAttributes"]["loginetl-original-message-id"]["StringValue"] == ids[4]
    wait_until(lambda: visible(queues) == 1)  # not deleted: back once its visibility ended
    [left] = queues.drain(queues.url)
    assert (left["MessageId"], left["Body"]) == (ids[3], NOT_CONFIRMED)
