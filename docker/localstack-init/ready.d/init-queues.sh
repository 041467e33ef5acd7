#!/usr/bin/env bash
# LocalStack READY hook: create login-queue-dlq and login-queue (RedrivePolicy: to the DLQ after
# 5 receives) and, when login-queue is empty, send the sample login events, one message per
# element of the JSON array. Safe to run again. Runs inside the localstack container, where
# awslocal and python3 are.
set -euo pipefail

QUEUE=login-queue
DLQ=login-queue-dlq
MAX_RECEIVE_COUNT=5
SAMPLE_DATA=${LOGINETL_SAMPLE_DATA:-/opt/loginetl/sample_data.json}

dlq_url=$(awslocal sqs create-queue --queue-name "$DLQ" --query QueueUrl --output text)
dlq_arn=$(awslocal sqs get-queue-attributes --queue-url "$dlq_url" \
    --attribute-names QueueArn --query Attributes.QueueArn --output text)
queue_url=$(awslocal sqs create-queue --queue-name "$QUEUE" --query QueueUrl --output text)

# Set apart from create-queue, which refuses other attributes for an existing queue.
attributes=$(python3 -c '
import json, sys
policy = {"deadLetterTargetArn": sys.argv[1], "maxReceiveCount": sys.argv[2]}
print(json.dumps({"RedrivePolicy": json.dumps(policy)}))
' "$dlq_arn" "$MAX_RECEIVE_COUNT")
awslocal sqs set-queue-attributes --queue-url "$queue_url" --attributes "$attributes"
echo "loginetl: queues $QUEUE and $DLQ ready"

depth=$(awslocal sqs get-queue-attributes --queue-url "$queue_url" \
    --attribute-names ApproximateNumberOfMessages ApproximateNumberOfMessagesNotVisible \
    --query '[Attributes.ApproximateNumberOfMessages, Attributes.ApproximateNumberOfMessagesNotVisible]' \
    --output text | awk '{ print $1 + $2 }')
if [ "$depth" -ne 0 ]; then
    echo "loginetl: $QUEUE already holds $depth messages; not seeding"
    exit 0
fi

# SendMessageBatch takes at most 10 entries: one file of entries per batch.
batches=$(mktemp -d)
trap 'rm -rf "$batches"' EXIT
python3 - "$SAMPLE_DATA" "$batches" <<'PY'
import json, pathlib, sys
elements = json.loads(pathlib.Path(sys.argv[1]).read_text(encoding="utf-8"))
if not isinstance(elements, list):
    sys.exit(f"{sys.argv[1]} is not a JSON array")
for start in range(0, len(elements), 10):
    entries = [
        {"Id": str(index), "MessageBody": json.dumps(element)}
        for index, element in enumerate(elements[start : start + 10])
    ]
    path = pathlib.Path(sys.argv[2]) / f"batch-{start // 10:05d}.json"
    path.write_text(json.dumps(entries))
PY

sent=0
for batch in "$batches"/batch-*.json; do
    failed=$(awslocal sqs send-message-batch --queue-url "$queue_url" --entries "file://$batch" \
        --query 'length(Failed || `[]`)' --output text)
    if [ "$failed" != "0" ]; then
        echo "loginetl: SQS refused $failed messages of $batch" >&2
        exit 1
    fi
    sent=$((sent + $(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))))' "$batch")))
done
echo "loginetl: sent $sent sample messages to $QUEUE"
