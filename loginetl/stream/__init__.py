"""The Kinesis source of `loginetl run --stream`: shard leases and checkpoints kept in
PostgreSQL, each checkpoint committed in the transaction of its rows.

    client.py       the Kinesis client, records (KPL de-aggregated), shards, one-line errors
    leases.py       the shard table: leases taken, renewed, stolen, given back
    checkpoints.py  inside COMMIT: dead-letter the refused, move each shard's checkpoint
    reading.py      a reader per shard held, and the coordinator that hands out shards
    metrics.py      what /metrics gains for a stream
    run.py          the run, wired as pipeline.Run is
    inspect.py      status and peek of a stream

A Kafka source would be one more package like this one: partitions for shards, offsets for
sequence numbers, the same Loader and the same checkpoint-in-the-transaction.
"""
