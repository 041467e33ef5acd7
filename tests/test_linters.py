"""Linters as tests, each from a pinned PyPI wheel of the dev extras (no network at test time):
shellcheck on every shell script, hadolint on the Dockerfile, kubernetes-validate on
deploy/kubernetes/, KEDA 2.13's CRD schemas (vendored in deploy/keda/) on the ScaledObject and
TriggerAuthentication, and check-jsonschema's GitHub-workflow schema on the CI workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy/kubernetes"
KEDA = ROOT / "deploy/keda"
WORKFLOW = ROOT / ".github/workflows/ci.yml"
# KEDA 2.13 (the README's "KEDA 2.13+") supports Kubernetes 1.27 to 1.29: validate against 1.29.
KUBERNETES_VERSION = "1.29.0"
# Not the project's: virtualenvs, scratch copies, caches, local state (see .gitignore).
SKIPPED_DIRS = {
    ".git",
    ".venv",
    "venv",
    "mutants",
    "build",
    "dist",
    "node_modules",
    "__pycache__",
    ".hypothesis",
    ".localstack",
    ".kinesis-mock",
    ".loginetl-stack",
    ".pytest_cache",
    ".ruff_cache",
    ".mypy_cache",
}
KEDA_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.v1alpha1.json",
    ("keda.sh/v1alpha1", "TriggerAuthentication"): "keda.sh_triggerauthentications.v1alpha1.json",
}


def tool(name: str) -> str:
    """A linter installed by the dev extras, next to this interpreter (or on PATH)."""
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    assert found, f"{name} is not installed: pip install -e '.[dev]' (scripts/venv.sh does)"
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


# --- shellcheck ---------------------------------------------------------------------------------


def is_shell_script(path: Path) -> bool:
    if path.suffix in (".sh", ".bash"):
        return True
    try:
        with path.open("rb") as file:
            first = file.readline(200)
    except OSError:
        return False
    return re.match(rb"#!\s*(/usr)?/bin/(env\s+)?(ba|da|k)?sh\b", first) is not None


def shell_scripts(root: Path = ROOT) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        found += [Path(folder) / f for f in files if is_shell_script(Path(folder) / f)]
    return sorted(found)


def test_the_scripts_are_found():
    found = {str(p.relative_to(ROOT)) for p in shell_scripts()}
    assert {
        "scripts/test.sh",
        "scripts/venv.sh",
        "scripts/demo.sh",
        ".ci/run",
        "docker/localstack-init/ready.d/init-queues.sh",
    } <= found
    assert not [p for p in found if p.startswith(("tests/", "loginetl/"))]


def test_every_shell_script_is_shellcheck_clean():
    scripts = [str(p.relative_to(ROOT)) for p in shell_scripts()]
    result = run(tool("shellcheck"), "--severity=warning", "--external-sources", *scripts)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_shell_script_has_a_shebang():
    missing = [p for p in shell_scripts() if not p.read_bytes().startswith(b"#!")]
    assert missing == []


# --- hadolint -----------------------------------------------------------------------------------


def test_the_dockerfile_is_hadolint_clean():
    result = run(tool("hadolint"), "--no-color", "--failure-threshold", "info", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


# --- Kubernetes manifests -------------------------------------------------------------------------


def manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def test_the_manifests_are_valid_kubernetes():
    result = run(
        tool("kubernetes-validate"),
        "--kubernetes-version",
        KUBERNETES_VERSION,
        "--strict",
        *[str(p.relative_to(ROOT)) for p in manifests()],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr
    passed = result.stdout.count(" passed for resource ")
    built_in = [
        doc
        for path in manifests()
        for doc in yaml.safe_load_all(path.read_text())
        if doc and (doc["apiVersion"], doc["kind"]) not in KEDA_SCHEMAS
    ]
    assert passed == len(built_in) >= 4  # every built-in object validated, none skipped


def strict(schema):
    """A CRD schema as the API server applies it, but rejecting unknown fields where the CRD
    would silently prune them (kubectl's --validate=strict): objects with `properties` get
    `additionalProperties: false` unless they keep unknown fields."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        schema["additionalProperties"] = False
    return schema


def keda_validator(api_version: str, kind: str) -> jsonschema.Draft4Validator:
    schema = strict(json.loads((KEDA / KEDA_SCHEMAS[api_version, kind]).read_text()))
    jsonschema.Draft4Validator.check_schema(schema)  # OpenAPI v3.0's schema dialect is draft 4's
    return jsonschema.Draft4Validator(schema)


def keda_objects() -> list[dict]:
    return [
        doc
        for path in manifests()
        for doc in yaml.safe_load_all(path.read_text())
        if doc and doc["apiVersion"].startswith("keda.sh/")
    ]


def test_the_keda_objects_match_the_keda_2_13_crd_schemas():
    objects = keda_objects()
    assert sorted(doc["kind"] for doc in objects) == ["ScaledObject", "TriggerAuthentication"]
    for doc in objects:
        errors = [
            f"{doc['kind']}: {'.'.join(map(str, e.absolute_path))}: {e.message}"
            for e in keda_validator(doc["apiVersion"], doc["kind"]).iter_errors(doc)
        ]
        assert errors == []


def test_the_strict_keda_schema_rejects_a_misspelt_field():
    scaled = next(doc for doc in keda_objects() if doc["kind"] == "ScaledObject")
    validator = keda_validator(scaled["apiVersion"], "ScaledObject")
    wrong = json.loads(json.dumps(scaled))
    wrong["spec"]["pollingIntervall"] = wrong["spec"].pop("pollingInterval")
    assert not validator.is_valid(wrong)
    wrong = json.loads(json.dumps(scaled))
    wrong["spec"]["minReplicaCount"] = "1"
    assert not validator.is_valid(wrong)


def test_the_vendored_keda_schemas_name_their_source_and_version():
    readme = (KEDA / "README.md").read_text()
    for name in KEDA_SCHEMAS.values():
        crd = name.removesuffix(".v1alpha1.json")
        url = f"https://github.com/kedacore/keda/blob/v2.13.0/config/crd/bases/{crd}.yaml"
        assert url in readme
        assert json.loads((KEDA / name).read_text())["type"] == "object"


# --- the CI workflow ----------------------------------------------------------------------------


def test_the_ci_workflow_is_valid_for_github_actions():
    result = run(
        tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_ci_workflow_runs_the_tests_and_builds_the_image():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any(re.search(r"(^|\s)(bash )?scripts/test\.sh\b", run) for run in runs)
    assert any(re.search(r"\bdocker build\b.*\s\.$", run.strip()) for run in runs)


@pytest.mark.parametrize("path", [WORKFLOW], ids=["ci.yml"])
def test_the_workflow_run_steps_are_shellcheck_clean(path, tmp_path):
    workflow = yaml.safe_load(path.read_text())
    steps = [s["run"] for job in workflow["jobs"].values() for s in job["steps"] if "run" in s]
    script = tmp_path / "steps.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + "\n".join(steps) + "\n")
    result = run(tool("shellcheck"), "--severity=warning", str(script))
    assert result.returncode == 0, result.stdout + result.stderr


# --- Python: ruff on the package and the tests, mypy on the package ------------------------------

# The other Python the team reads, kept by the same ruff config as loginetl/: all of it is
# formatted; ruff check covers every test, and those scripts and benchmarks that pass it (the rest
# of scripts/ and benchmarks/ do not yet).
RUFF_FORMATTED = ("tests", "scripts", "benchmarks")
RUFF_CHECKED = (
    "tests",
    "scripts/cli_docs.py",
    "scripts/kinesis.py",
    "scripts/localstack.py",
    "benchmarks/__init__.py",
    "benchmarks/__main__.py",
    "benchmarks/bare.py",
    "benchmarks/compare.py",
    "benchmarks/report.py",
)


def test_the_package_is_ruff_clean():
    result = run(tool("ruff"), "check", "--no-cache", "loginetl")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_is_ruff_formatted():
    result = run(tool("ruff"), "format", "--check", "--no-cache", "loginetl")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tests_scripts_and_benchmarks_are_ruff_clean():
    result = run(tool("ruff"), "check", "--no-cache", *RUFF_CHECKED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_tests_scripts_and_benchmarks_are_ruff_formatted():
    result = run(tool("ruff"), "format", "--check", "--no-cache", *RUFF_FORMATTED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_package_type_checks():
    """mypy with [tool.mypy] of pyproject.toml; each exception is a `type: ignore[code]` with
    its reason on its line."""
    result = run(tool("mypy"), "--cache-dir", str(ROOT / ".mypy_cache"))
    assert result.returncode == 0, result.stdout + result.stderr
    ignores = [
        line
        for path in (ROOT / "loginetl").rglob("*.py")
        for line in path.read_text().splitlines()
        if "type: ignore" in line
    ]
    assert all("type: ignore[" in line for line in ignores), "an ignore must name its error code"
