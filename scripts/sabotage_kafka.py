"""The breaks of the Kafka source (`run --topic`), in the format of sabotage_breaks.py: each
guarantee is a row of docs/guarantees.md, word for word, and each break's tests are the ones
that row cites. scripts/sabotage.py runs them with the others."""

from __future__ import annotations

from sabotage_breaks import Break

KAFKA_ONCE = (
    "A record of a Kafka topic is loaded at most once: each partition's next offset is stored "
    "in the transaction of its rows and sought on assignment, and a record read again is a "
    "duplicate of its row (its key is topic/partition/offset)."
)
KAFKA_FENCE = "A member of the group that lost a partition cannot commit for it."
KAFKA_HOSTILE = (
    "A record of a topic that cannot load (not UTF-8, a tombstone, invalid) is in the "
    "dead-letter topic with its reason and its topic, partition and offset, never a crash."
)
KAFKA_SECRETS = (
    "librdkafka settings from `LOGINETL_KAFKA_<NAME>` that are secret, and every value read "
    "from a `_FILE`, never appear in output, logs or errors."
)
KAFKA = "tests/test_kafka.py::"
KAFKA_RERUN_TEST = KAFKA + "test_a_rerun_loads_nothing_twice_and_a_record_read_again_is_a_duplicate"
KAFKA_KILL_TEST = (
    "tests/test_kafka_kill.py::"
    "test_kill_9_mid_load_several_times_then_a_rerun_loads_every_record_once"
)
KAFKA_FENCE_TEST = KAFKA + "test_a_member_whose_claim_was_taken_commits_nothing_for_that_partition"
KAFKA_HOSTILE_TEST = KAFKA + "test_poison_and_hostile_records_are_dead_lettered_with_reasons"
KAFKA_SECRETS_TEST = KAFKA + "test_secrets_never_appear_in_output"

BREAKS: tuple[Break, ...] = (
    Break(
        KAFKA_ONCE,
        "a topic's partitions sought to --from on assignment, whatever offset is stored",
        "kafka/reading.py",
        "            if claim.next_offset is not None:\n                tp.offset",
        "            if False:  # SABOTAGE: stored offsets ignored\n                tp.offset",
        (KAFKA_RERUN_TEST, KAFKA_KILL_TEST),
    ),
    Break(
        KAFKA_ONCE,
        "a Kafka row keyed by a new id each time its record is read",
        "kafka/client.py",
        "        return record_id(self.topic, str(self.partition), str(self.offset))\n",
        "        import uuid  # SABOTAGE: no stable key\n\n"
        "        return record_id(self.topic, str(self.partition), uuid.uuid4().hex)\n",
        (KAFKA_RERUN_TEST, KAFKA_KILL_TEST),
    ),
    Break(
        KAFKA_FENCE,
        "the offset write does not check the claim (owner, generation)",
        "kafka/offsets.py",
        '    "AND o.owner = %s AND o.generation = v.generation "\n'
        '    "AND (o.next_offset IS NULL OR o.next_offset <= v.first) "\n'
        '    "RETURNING o.partition, o.generation"\n',
        '    "AND %s IS NOT NULL "  # SABOTAGE: no fence\n'
        '    "AND (o.next_offset IS NULL OR o.next_offset <= v.first) "\n'
        '    "RETURNING o.partition, v.generation"\n',
        (KAFKA_FENCE_TEST,),
    ),
    Break(
        KAFKA_HOSTILE,
        "a tombstone (no value) read as text",
        "kafka/client.py",
        "        if self.data is None:\n            raise InvalidMessage(NO_VALUE)\n",
        "        pass  # SABOTAGE: a tombstone decoded\n",
        (KAFKA_HOSTILE_TEST,),
    ),
    Break(
        KAFKA_SECRETS,
        "librdkafka's own log lines written raw to stderr, not through loginetl's logging",
        "kafka/client.py",
        '            "logger": LIBRDKAFKA_LOG,\n        }',
        "        }  # SABOTAGE: librdkafka logs raw",
        (KAFKA_SECRETS_TEST,),
    ),
)
