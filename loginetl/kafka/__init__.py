"""The Kafka source of `loginetl run --topic`: one member of a consumer group, each
partition's offset stored in PostgreSQL in the transaction of its rows (confluent-kafka, the
`kafka` extra).

    client.py    settings (LOGINETL_KAFKA_<NAME> as librdkafka properties), records, errors
    offsets.py   the offsets table: claims on assignment, the fenced offset write
    reading.py   the consumer's thread: assignment, seeking, reading to the end
    settling.py  inside COMMIT: dead-letter to the topic and wait for the broker, move offsets
    run.py       the run, wired as stream/run.py is (pipeline/committing.py)
"""
