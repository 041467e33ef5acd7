"""`loginetl peek`: shows messages and verdicts without consuming them."""

import json

from loginetl.masking import MaskKey
from tests.support.data import MASK_KEY, sample_messages

KEY = MaskKey(MASK_KEY)


def peek_json(cli, *args, env=None):
    result = cli("peek", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    return result, json.loads(result.stdout)


def test_peek_shows_messages_masked_and_leaves_them_on_the_queue(cli, queues):
    queues.send_sample()

    result, peeked = peek_json(cli, "--max-messages", "15")

    assert len(peeked["messages"]) == 15
    assert len({m["message_id"] for m in peeked["messages"]}) == 15
    by_user = {m["user_id"]: m for m in sample_messages() if "user_id" in m}
    for message in peeked["messages"]:
        assert message["receive_count"] == 1
        fields = message["fields"]
        if message["would_load"]:
            raw = by_user[fields["user_id"]]
            assert fields["ip"] == KEY.mask(raw["ip"])
            assert fields["device_id"] == KEY.mask(raw["device_id"])
        assert message["sent_at"]
    # Nothing consumed, and every message visible again at once.
    attributes = queues.client.get_queue_attributes(
        QueueUrl=queues.url, AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "100"
    assert "each peek counts as a receive" in result.stderr
    assert "5 receives" in result.stderr


def test_peek_says_why_a_message_would_be_dead_lettered(cli, queues):
    queues.send([json.dumps({"foo": "oops_wrong_msg_type", "bar": "123"}), "{not json"])

    _, peeked = peek_json(cli)

    verdicts = sorted(m["verdict"] for m in peeked["messages"])
    assert verdicts[0].startswith("json: not valid JSON")
    assert verdicts[1].startswith("schema: missing required field 'user_id'")
    assert not any(m["would_load"] for m in peeked["messages"])
    shown = {m["verdict"][:4]: m["fields"] for m in peeked["messages"]}
    assert shown["json"] == {"body": "(9 characters, not shown)"}


def test_show_pii_shows_raw_values_and_needs_no_key(cli, queues):
    queues.send([json.dumps(sample_messages()[0])])

    _, peeked = peek_json(cli, "--show-pii", env={"LOGINETL_MASK_KEY": ""})

    [message] = peeked["messages"]
    assert message["fields"]["ip"] == sample_messages()[0]["ip"]
    assert message["fields"]["device_id"] == sample_messages()[0]["device_id"]


def test_peek_without_a_key_refuses_to_mask(cli, queues):
    result = cli("peek", env={"LOGINETL_MASK_KEY": ""})
    assert result.exit_code == 2
    assert "LOGINETL_MASK_KEY is not set" in result.stderr


def test_peek_table_shows_verdicts_and_no_raw_pii(cli, queues):
    message = sample_messages()[0]
    queues.send([json.dumps(message), json.dumps(dict(message, locale="[red]x[/red]\x1b[2J"))])

    result = cli("peek")

    assert result.exit_code == 0
    assert "load" in result.stdout
    assert message["ip"] not in result.stdout
    assert message["device_id"] not in result.stdout
    assert "\x1b[2J" not in result.stdout


def test_peek_on_an_empty_queue_shows_nothing(cli, queues):
    _, peeked = peek_json(cli)
    assert peeked["messages"] == []
