"""deploy/iam/*.json stay true: every AWS API action the commands make against a real SQS server
(moto over HTTP), recorded through botocore's own event system, is in its role's policy, and the
policy grants nothing that no command calls. No `*` in any Action or Resource. The stream's
commands are recorded the same way against kinesis-mock (their tests skip where Node.js is
missing; CI installs it)."""

import json
from pathlib import Path

import pytest
import yaml

from loginetl.config import region_from_queue_url
from tests.support import iam_recorder
from tests.support.data import sample_messages

from .test_cli_replay_dlq import dead_lettered_by_an_outage

ROOT = Path(__file__).resolve().parent.parent
IAM = ROOT / "deploy" / "iam"
# The roles the README names, the commands each runs, and the queues of the templates.
ROLES = {"service": ("run", "peek", "status"), "operations": ("replay-dlq",)}
STREAM_ROLES = {
    "stream": ("run --stream", "peek --stream", "status --stream"),
    "operations": ("replay-dlq --to-stream",),
}
# The last part of each ARN in the policies: which of the test's queues or stream it stands for.
RESOURCES = {
    "login-queue": "source",
    "login-queue-dlq": "dlq",
    "logins-dlq": "dlq",
    "stream/logins": "stream",
    "dbuser:db-LOGINETLEXAMPLE/loginetl_writer": "database",
}
# Roles whose commands connect to PostgreSQL: with LOGINETL_DATABASE_IAM_AUTH=1 they sign in
# with a token (rds-db:connect), which botocore signs locally: no API call to record.
DATABASE_ROLES = ("service", "stream")
VALID = [json.dumps(m) for m in sample_messages() if "user_id" in m]


@pytest.fixture
def record(monkeypatch):
    """Calls `cli(...)` with the recording plugin loaded; returns {command: {(action, queue)}}
    where queue is "source" or "dlq"."""
    monkeypatch.setenv("BOTOCORE_EXPERIMENTAL__PLUGINS", iam_recorder.PLUGIN)
    recorded: dict[str, set[tuple[str, str]]] = {}

    def invoke(cli, queues, *args, env=None, stream=None):
        iam_recorder.CALLS.clear()
        result = cli(*args, env=env)
        assert result.exit_code == 0, result.output
        how = " ".join(arg for arg in args if arg in ("--stream", "--to-stream"))
        calls = recorded.setdefault(f"{args[0]} {how}".strip(), set())
        names = {queues.url: "source", queues.dlq_url: "dlq"}
        names |= {url.rsplit("/", 1)[1]: which for url, which in names.items()}  # GetQueueUrl
        names |= {stream.name: "stream"} if stream else {}
        for service, operation, queue in iam_recorder.CALLS:
            # GetRecords names only its shard iterator, a next ListShards page only its token:
            # both are authorised on the stream (the one stream of the test).
            which = "stream" if service == "kinesis" and not queue else names[queue]
            # A batch call is authorised as its single action (DeleteMessageBatch: DeleteMessage).
            calls.add((f"{service}:{operation.removesuffix('Batch')}", which))
        return result

    return invoke, recorded


def policy(role: str) -> dict:
    return json.loads((IAM / f"{role}.json").read_text())


def granted(document: dict, service: str | None = None) -> set[tuple[str, str]]:
    """(action, which resource) the policy allows; only `service`'s actions when given."""
    found = set()
    for statement in document["Statement"]:
        for resource in statement["Resource"]:
            which = RESOURCES[resource.split(":", 5)[5]]
            found |= {(action, which) for action in statement["Action"]}
    return {grant for grant in found if service is None or grant[0].startswith(f"{service}:")}


def every_call_the_commands_make(record, cli, sqs, queues) -> dict[str, set]:
    """Every path of each command that reaches SQS: loads, dead-lettering, peeks, status with
    a dead-letter queue to peek, and replays by each way of finding where a message goes."""
    invoke, recorded = record
    invoke(cli, queues, "init-db")
    queues.send([*VALID[:15], "not json"])
    invoke(cli, queues, "peek", "--max-messages", "3")  # made visible again
    invoke(cli, queues, "run", "--max-messages", "5")
    invoke(cli, queues, "run")  # the rest, the invalid one dead-lettered
    invoke(cli, queues, "status")  # the DLQ's reasons, peeked
    invoke(cli, queues, "replay-dlq", "--dry-run")
    invoke(cli, queues, "replay-dlq", "--reason", "nothing-matches-this")
    invoke(cli, queues, "replay-dlq")  # DLQ found from the source queue's RedrivePolicy
    moved, _ = dead_lettered_by_an_outage(sqs, 3)  # no loginetl attributes: the DLQ's sources
    invoke(cli, moved, "replay-dlq", "--dlq-url", moved.dlq_url, env={"LOGINETL_QUEUE_URL": None})
    return recorded


def test_each_policy_grants_exactly_what_its_commands_call(record, cli, sqs, queues):
    recorded = every_call_the_commands_make(record, cli, sqs, queues)
    assert recorded.pop("init-db") == set()  # no AWS at all
    assert set(recorded) == {command for commands in ROLES.values() for command in commands}
    for role, commands in ROLES.items():
        called = set().union(*(recorded[command] for command in commands))
        # The stream's own actions (operations: replaying to a stream) are the next test's.
        exactly(role, called, granted(policy(role), "sqs"))


def exactly(role: str, called: set, allowed: set) -> None:
    assert not called - allowed, f"{role}.json lacks {sorted(called - allowed)}"
    assert not allowed - called, f"{role}.json grants {sorted(allowed - called)}, never called"


def test_the_stream_policies_grant_exactly_what_the_stream_commands_call(
    record, cli, queues, stream_env, stream
):
    from tests.support.runs import logins

    invoke, recorded = record
    env = {**stream_env, "LOGINETL_QUEUE_URL": None}
    invoke(cli, queues, "init-db", env=env)
    stream.put([*logins(3, "iam"), "{poison"], key="k")
    for command in (["peek"], ["run"], ["status"]):
        invoke(cli, queues, *command, "--stream", stream.name, env=env, stream=stream)
    invoke(
        cli,
        queues,
        "replay-dlq",
        "--dlq-url",
        queues.dlq_url,
        "--to-stream",
        stream.name,
        env=env,
        stream=stream,
    )
    assert queues.count(queues.dlq_url) == 0  # the poison record went back to the stream
    stream_calls = set().union(*(recorded[command] for command in STREAM_ROLES["stream"]))
    exactly("stream", stream_calls, granted(policy("stream")) - granted(policy("stream"), "rds-db"))
    [replay] = STREAM_ROLES["operations"]
    kinesis = {call for call in recorded[replay] if call[0].startswith("kinesis:")}
    exactly("operations", kinesis, granted(policy("operations"), "kinesis"))
    sqs = recorded[replay] - kinesis
    assert not sqs - granted(policy("operations"), "sqs"), sorted(sqs)


@pytest.mark.parametrize("role", [*ROLES, "stream"])
def test_policies_are_well_formed_with_no_wildcards(role):
    document = policy(role)
    assert document["Version"] == "2012-10-17"
    sids = [statement["Sid"] for statement in document["Statement"]]
    assert len(sids) == len(set(sids))
    for statement in document["Statement"]:
        assert set(statement) == {"Sid", "Effect", "Action", "Resource"}
        assert statement["Effect"] == "Allow"
        for value in [*statement["Action"], *statement["Resource"]]:
            assert "*" not in value and "?" not in value, value
        (service,) = {action.split(":")[0] for action in statement["Action"]}
        assert service in ("sqs", "kinesis", "rds-db")
        for resource in statement["Resource"]:
            assert resource.startswith(f"arn:aws:{service}:eu-west-1:123456789012:"), resource


def test_the_service_policy_names_the_deployments_queue():
    deployment = next(
        doc
        for doc in yaml.safe_load_all((ROOT / "deploy/kubernetes/deployment.yaml").read_text())
        if doc["kind"] == "Deployment"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    url = next(e["value"] for e in container["env"] if e["name"] == "LOGINETL_QUEUE_URL")
    account, name = url.rsplit("/", 2)[1:]
    arn = f"arn:aws:sqs:{region_from_queue_url(url)}:{account}:{name}"
    resources = {r for s in policy("service")["Statement"] for r in s["Resource"]}
    assert {arn, f"{arn}-dlq"} == {r for r in resources if r.startswith("arn:aws:sqs:")}


@pytest.mark.parametrize("role", [*ROLES, "stream"])
def test_the_roles_that_use_the_database_may_sign_in_to_it_with_iam(role):
    """The writer's database user, and nothing else; roles without the database get none."""
    expected = {("rds-db:connect", "database")} if role in DATABASE_ROLES else set()
    assert granted(policy(role), "rds-db") == expected


def test_the_kubernetes_readme_points_at_the_files_instead_of_a_copy():
    text = (ROOT / "deploy/kubernetes/README.md").read_text()
    assert "../iam/service.json" in text and '"Statement"' not in text
