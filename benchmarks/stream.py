#!/usr/bin/env python3
"""How fast `loginetl run --stream` reads a Kinesis stream, against a bare GetRecords consumer.

For each shard count S, on kinesis-mock (scripts/kinesis.py, started here) and the same
PostgreSQL, a fresh stream of S shards holding N records (1% invalid):

  bare GetRecords  one thread per shard, GetShardIterator + GetRecords (Limit as loginetl's) to
                   the tip, each record's data parsed as JSON, no database: the most a consumer
                   gets out of this endpoint. Its own process (loginetl's Kinesis client),
                   records/s from wall time, start-up included as for the run (the target's
                   basis, as benchmarks/bare.py is for SQS); also measured in this process,
                   start-up excluded, for reference;
  loginetl run     `run --stream` as a subprocess: records/s from wall time, its peak RSS;
                   rows and the dead-letter queue (LocalStack, scripts/localstack.py) checked
                   afterwards.

--repeat R measures R rounds at each shard count, each on its own fresh stream, deleted after
its round (kinesis-mock's PutRecords slows with every record it holds: a 50,000-record fill of
4 shards took 4.5 min here as the only stream, while a second stream beside it held only
34,500 records after 9 min): the bare consumer, then the run. The ratio is the median of the
rounds' own ratios (the two of a round share the machine's mood of the moment; on a shared
2-core machine one run's rate moves by 20% from one round to the next), each round's listed
beside it.

BENCH_PREFIX, when set, is put before the run's command line: `py-spy record -o FILE --` to
profile it (its peak RSS is then py-spy's).

Example:

    .venv/bin/python -m benchmarks --stream --messages 50000 --shards 4 16 --repeat 3
    .venv/bin/python -m benchmarks.stream --messages 5000 --shards 4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import boto3

from loginetl.stream.client import kinesis_client
from loginetl.stream.reading import MAX_RECORDS
from scripts import kinesis as kinesis_mock

from .environment import (
    LOGINETL,
    REPO,
    byte_compile_loginetl,
    child_environment,
    fresh_database,
    init_table,
    loginetl_revision,
    query_one,
    queue_depth,
    sqs_endpoint,
)

ADMIN_URL = os.environ.get(
    "LOGINETL_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
TARGET_RATIO = 0.8
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "test",
               "aws_secret_access_key": "test"}  # fmt: skip


def records(count: int) -> list[bytes]:
    """`count` logins, each its own user; one in a hundred invalid."""
    data = []
    for number in range(count):
        if number % 100 == 99:
            data.append(b"{not json")
            continue
        login = {"user_id": f"bench-{number}", "device_type": "android", "ip": "10.1.2.3",
                 "device_id": f"device-{number % 977}", "locale": "RU", "app_version": "2.3.0"}  # fmt: skip
        data.append(json.dumps(login).encode())
    return data


def fill(client, stream: str, shards: int, count: int) -> None:
    client.create_stream(StreamName=stream, ShardCount=shards)
    while (
        client.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
            "StreamStatus"
        ]
        != "ACTIVE"
    ):
        time.sleep(0.05)
    data = records(count)
    for start in range(0, count, 500):
        entries = [{"Data": item, "PartitionKey": f"k{start + index}"}
                   for index, item in enumerate(data[start : start + 500])]  # fmt: skip
        response = client.put_records(StreamName=stream, Records=entries)
        assert not response.get("FailedRecordCount"), response


def bare(client, stream: str) -> int:
    """Records read by one GetRecords loop per shard, to the tip, each record's data parsed as
    JSON (what any consumer does with a login; a bad one counted, not fatal), no database."""
    shards = [s["ShardId"] for s in client.list_shards(StreamName=stream)["Shards"]]
    counts = [0] * len(shards)

    def read(index: int) -> None:
        iterator = client.get_shard_iterator(StreamName=stream, ShardId=shards[index],
                                             ShardIteratorType="TRIM_HORIZON")["ShardIterator"]  # fmt: skip
        while iterator:
            response = client.get_records(ShardIterator=iterator, Limit=MAX_RECORDS)
            for record in response["Records"]:
                try:
                    json.loads(record["Data"])
                except ValueError:
                    pass
            counts[index] += len(response["Records"])
            if not response["Records"] and response.get("MillisBehindLatest", 0) == 0:
                return
            iterator = response.get("NextShardIterator")

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(shards))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts)


def bare_in_process(client, stream: str) -> float:
    """Records per second of `bare`, start-up excluded (for reference)."""
    started = time.monotonic()
    return bare(client, stream) / (time.monotonic() - started)


def bare_process(endpoint: str, stream: str) -> tuple[float, float]:
    """(records per second, CPU seconds) of `bare` as its own process, from wall time and
    wait4: start-up included, as for `loginetl run`, with the same Kinesis client."""
    command = [sys.executable, "-m", "benchmarks.stream", "--bare", stream, "--endpoint", endpoint]
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO)
    out = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    return int(out) / seconds, usage.ru_utime + usage.ru_stime


def loginetl_run(stream: str, environment: dict, batch_size: int | None) -> tuple:
    """(records/s from wall time, peak RSS in MB, its --json summary, CPU seconds)."""
    command = [str(LOGINETL), "run", "--json", "--stream", stream]
    command += [] if batch_size is None else ["--batch-size", str(batch_size)]
    command = os.environ.get("BENCH_PREFIX", "").split() + command  # e.g. a profiler
    with tempfile.TemporaryDirectory(prefix="loginetl-bench-") as folder:
        out = Path(folder, "stdout")
        with out.open("wb") as stdout:
            started = time.monotonic()
            process = subprocess.Popen(command, env=environment, cwd=folder, stdout=stdout,
                                       stderr=subprocess.DEVNULL)  # fmt: skip
            _, status, usage = os.wait4(process.pid, 0)
            seconds = time.monotonic() - started
        text = out.read_text()
    summary = {"error": text[-300:]}
    if "{" in text:  # raw_decode: a profiler in BENCH_PREFIX may print after the summary
        summary = json.JSONDecoder().raw_decode(text, text.index("{"))[0]
    cpu = usage.ru_utime + usage.ru_stime
    return summary.get("received", 0) / seconds, usage.ru_maxrss / 1024, summary, cpu


def measure(args, client, sqs, endpoint, environment, shards: int) -> dict:
    rounds = []
    database = environment["LOGINETL_DATABASE_URL"]
    invalid = args.messages // 100
    problems = []
    for _ in range(args.repeat):
        stream = f"bench-{shards}-{secrets.token_hex(3)}"
        fill(client, stream, shards, args.messages)
        in_process = bare_in_process(client, stream)
        bare_rate, bare_cpu = bare_process(endpoint, stream)
        dlq = sqs.create_queue(QueueName=f"bench-dlq-{secrets.token_hex(3)}")["QueueUrl"]
        rows_before = query_one(database, "SELECT count(*) FROM user_logins")
        try:
            rate, rss, summary, cpu = loginetl_run(
                stream, environment | {"LOGINETL_DLQ_URL": dlq}, args.batch_size
            )
            rows = query_one(database, "SELECT count(*) FROM user_logins") - rows_before
            dead = sum(queue_depth(sqs, dlq))
        finally:
            sqs.delete_queue(QueueUrl=dlq)
            # the next round's fill as fast as the first (see the docstring)
            client.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        rounds.append((bare_rate, rate, rss, in_process, bare_cpu, cpu))
        if (rows, dead, summary.get("dead_lettered")) != (
            args.messages - invalid,
            invalid,
            invalid,
        ):
            problems.append(
                f"{rows} rows of {args.messages - invalid}, {dead} in the dead-letter queue of "
                f"{invalid} (summary: {summary.get('loaded')} loaded, "
                f"{summary.get('dead_lettered')} dead-lettered{summary.get('error', '')})"
            )
    bare_rate = statistics.median(r[0] for r in rounds)
    run_rate = statistics.median(r[1] for r in rounds)
    ratios = [run / bare for bare, run, *_ in rounds]  # each round's pair: the same mood
    return {
        "shards": shards, "messages": args.messages, "bare_per_second": round(bare_rate),
        "run_per_second": round(run_rate),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(ratio, 2) for ratio in ratios],
        "bare_in_process_per_second": round(statistics.median(r[3] for r in rounds)),
        "peak_rss_mb": round(max(r[2] for r in rounds)), "problems": problems,
        # CPU of each process, start-up included, per record read
        "bare_cpu_ms_per_record": round(statistics.median(r[4] for r in rounds) * 1000 / args.messages, 4),
        "run_cpu_ms_per_record": round(statistics.median(r[5] for r in rounds) * 1000 / args.messages, 4),
    }  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="records per stream")
    parser.add_argument("--shards", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--batch-size", type=int, help="the run's --batch-size (default: its own)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--database-url", default=ADMIN_URL)
    parser.add_argument("--sqs-endpoint-url", help="the dead-letter queue's SQS endpoint "
                        "(default: start LocalStack, scripts/localstack.py)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--bare", metavar="STREAM", help=argparse.SUPPRESS)  # bare_process
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bare:
        print(bare(kinesis_client(args.endpoint), args.bare))
        return 0
    byte_compile_loginetl()
    server = kinesis_mock.start()
    try:
        with sqs_endpoint(args.sqs_endpoint_url) as sqs_server:
            client = kinesis_client(server.endpoint)
            sqs = boto3.client("sqs", endpoint_url=sqs_server.url, **CREDENTIALS)
            with fresh_database(args.database_url) as database:
                environment = child_environment(secrets.token_hex(32)) | {
                    "AWS_ENDPOINT_URL_KINESIS": server.endpoint,
                    "AWS_ENDPOINT_URL_SQS": sqs_server.url, "LOGINETL_DATABASE_URL": database,
                }  # fmt: skip
                init_table(database, environment)
                sizes = [
                    measure(args, client, sqs, server.endpoint, environment, n) for n in args.shards
                ]
    finally:
        kinesis_mock.stop(server)
    result = {"revision": loginetl_revision(), "kinesis": "kinesis-mock " + kinesis_mock.PACKAGE,
              "target_ratio": TARGET_RATIO, "sizes": sizes}  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"loginetl {result['revision']} on {result['kinesis']}, {args.messages} records")
        print(
            "shards  bare rec/s  run rec/s  run/bare  peak RSS  CPU ms/rec run/bare  checks"
            "  (bare in process, start-up excluded)"
        )
        for size in sizes:
            verdict = "met" if size["ratio"] >= TARGET_RATIO else "NOT met"
            cpu = f"{size['run_cpu_ms_per_record']:.3f}/{size['bare_cpu_ms_per_record']:.3f}"
            ratio = f"{size['ratio']}" + (f" {size['ratios']}" if len(size["ratios"]) > 1 else "")
            print(f"{size['shards']:>6}  {size['bare_per_second']:>10}  "
                  f"{size['run_per_second']:>9}  {ratio:>8} ({verdict})  "
                  f"{size['peak_rss_mb']:>5} MB  {cpu:>18}  {'; '.join(size['problems']) or 'ok'}"
                  f"  ({size['bare_in_process_per_second']})")  # fmt: skip
    return 0 if all(not size["problems"] for size in sizes) else 1


if __name__ == "__main__":
    sys.exit(main())
