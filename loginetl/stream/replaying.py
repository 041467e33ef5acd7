"""`replay-dlq --to-stream`: put dead-lettered records back on a Kinesis stream.

A replayed record gets a new sequence number, so its identity travels in its partition key
(REPLAY_PREFIX + the original identity, well under Kinesis's 256 characters): `run --stream`
loads it under that identity, and a record loaded before still loads once. Binary data the
dead-letter queue holds base64-encoded goes back as the bytes it was.
"""

from __future__ import annotations

import base64

from ..sqs import QueueMessage
from . import client as kinesis
from .checkpoints import ENCODING_ATTRIBUTE

MAX_PER_CALL = 500  # PutRecords' limit


def data_of(message: QueueMessage) -> bytes:
    if message.attributes.get(ENCODING_ATTRIBUTE) == "base64":
        return base64.b64decode(message.body)
    return message.body.encode("utf-8", "surrogatepass")


def put_back(client, stream: str, messages: list[QueueMessage]) -> dict[int, str]:
    """PutRecords, checked per record; returns {index: why} for those Kinesis did not take."""
    not_sent: dict[int, str] = {}
    for start in range(0, len(messages), MAX_PER_CALL):
        chunk = messages[start : start + MAX_PER_CALL]
        records = [
            {"Data": data_of(m), "PartitionKey": kinesis.REPLAY_PREFIX + m.origin_id} for m in chunk
        ]
        with kinesis.kinesis_errors("cannot put records on", stream):
            response = client.put_records(StreamName=stream, Records=records)
        for index, result in enumerate(response.get("Records", [])):
            if "ErrorCode" in result:
                not_sent[start + index] = f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}"
    return not_sent
