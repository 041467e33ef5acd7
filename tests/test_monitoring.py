"""The monitoring files: deploy/prometheus/ (alert and recording rules, their promtool unit
tests, an example scrape config) and deploy/grafana/loginetl.json.

promtool (Debian's `prometheus` package; .ci/run installs it) checks and unit-tests the rules and
parses every dashboard expression. A real `loginetl run --follow --metrics-port` is then scraped
to show that every metric name the rules and the dashboard use is one loginetl exposes.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.support.ci import skip_or_fail
from tests.support.faults import free_port, proxy_for, start_loginetl, through, wait_until
from tests.support.runs import env_for, init, scrape, valid_bodies

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS = ROOT / "deploy/prometheus"
RULES = PROMETHEUS / "loginetl.rules.yml"
RULE_TESTS = PROMETHEUS / "loginetl.rules.test.yml"
EXAMPLE_CONFIG = PROMETHEUS / "prometheus.example.yml"
DASHBOARD = ROOT / "deploy/grafana/loginetl.json"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.usefixtures("promtool_installed")
# Series Prometheus makes itself, not loginetl.
SYNTHETIC = {"up"}
# Grafana's variables, given values a real dashboard could have, so the result is PromQL.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$job": "loginetl", "$namespace": ".*"}


@pytest.fixture
def promtool_installed():
    if PROMTOOL is None:
        skip_or_fail("promtool not found: install Debian's `prometheus` package (.ci/run does)")


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


# --- reading PromQL -------------------------------------------------------------------------------

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    keywords, label names (in {...} or by/on/... lists), strings, durations or numbers."""
    expr = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\{[^}]*\}", " ", expr)
    expr = re.sub(r"\[[^\]]*\]", " ", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        word = match.group()
        if word.lower() in _KEYWORDS or expr[match.end() :].lstrip().startswith("("):
            continue  # a keyword or a function
        names.add(word)
    return names


def test_metric_names_reads_selectors_and_skips_everything_else():
    expr = (
        "histogram_quantile(0.99, sum by (le, job) (rate(loginetl_batch_seconds_bucket"
        '{job=~"a|b", kind="x"}[5m]))) > 1e3 and on (job) rec:loginetl_x:rate5m offset 5m'
        ' or absent(up{job="loginetl"}) unless sum without (instance) (foo_total) / bool 2'
    )
    assert metric_names(expr) == {
        "loginetl_batch_seconds_bucket",
        "rec:loginetl_x:rate5m",
        "up",
        "foo_total",
    }


def rule_groups() -> list[dict]:
    return yaml.safe_load(RULES.read_text())["groups"]


def rules() -> list[dict]:
    return [rule for group in rule_groups() for rule in group["rules"]]


def alert_names() -> set[str]:
    return {rule["alert"] for rule in rules() if "alert" in rule}


def recorded_names() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def dashboard_panels(panels: list[dict] | None = None) -> list[dict]:
    found = []
    for panel in json.loads(DASHBOARD.read_text())["panels"] if panels is None else panels:
        found += [panel, *dashboard_panels(panel.get("panels", []))]
    return found


def dashboard_expressions() -> list[str]:
    """Every panel query, with Grafana's variables replaced."""
    exprs = [t["expr"] for p in dashboard_panels() for t in p.get("targets", []) if "expr" in t]
    for variable in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if variable["type"] == "query":  # label_values(SELECTOR, label): the selector is PromQL
            query = variable["query"]["query"]
            exprs.append(re.fullmatch(r"label_values\((.+),\s*\w+\)", query).group(1))
    resolved = []
    for expr in exprs:
        for name, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"a Grafana variable the test cannot resolve: {expr}"
        resolved.append(expr)
    return resolved


# --- the rules --------------------------------------------------------------------------------


@needs_promtool
def test_the_rules_pass_promtool_check():
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_the_rule_unit_tests_pass():
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_tested_both_firing_and_not_firing():
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    firing = {case["alertname"] for case in cases if case["exp_alerts"]}
    quiet = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert alert_names() == firing == quiet


def test_the_alerts_cover_what_an_operator_must_be_woken_for():
    exprs = {rule["alert"]: rule["expr"] for rule in rules() if "alert" in rule}
    recorded = {rule["record"]: rule["expr"] for rule in rules() if "record" in rule}

    def uses(alert: str) -> str:  # the alert's expression with the recordings it reads
        return exprs[alert] + " ".join(
            recorded[n] for n in metric_names(exprs[alert]) & set(recorded)
        )

    assert "loginetl_messages_dead_lettered_total" in uses("LoginetlDeadLetterQueueGrowing")
    assert {"loginetl_queue_depth", "loginetl_messages_loaded_total"} <= metric_names(
        uses("LoginetlStuck")
    )
    assert "loginetl_queue_depth" in uses("LoginetlQueueBacklog")
    assert 'kind="database"' in uses("LoginetlDatabaseErrors")
    assert 'kind="queue"' in uses("LoginetlQueueErrors")
    assert "histogram_quantile(0.99" in uses("LoginetlBatchLatencyHigh")
    assert exprs["LoginetlTargetDown"].strip() == 'up{job="loginetl"} == 0'
    for rule in rules():
        if "alert" in rule:
            assert rule["labels"]["severity"] == "page"
            assert {"summary", "description"} <= set(rule["annotations"])


@needs_promtool
def test_the_example_prometheus_config_is_valid(tmp_path):
    # Debian builds Prometheus without Kubernetes discovery: check the rest of the file with
    # the pod discovery swapped for a static target.
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    assert config["rule_files"] == [RULES.name]
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "loginetl"]
    assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
    job["static_configs"] = [{"targets": ["127.0.0.1:9100"]}]
    (tmp_path / EXAMPLE_CONFIG.name).write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / RULES.name)
    result = promtool("check", "config", EXAMPLE_CONFIG.name, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard ----------------------------------------------------------------------------


def test_the_dashboard_has_the_panels_an_operator_needs():
    panels = dashboard_panels()
    assert len({p["id"] for p in panels}) == len(panels)
    titles = {p["title"] for p in panels}
    assert {
        "Messages per second",
        "Dead-lettered per second, by reason",
        "Queue depth",
        "Batch latency",
        "Errors per second, by kind",
    } <= titles
    # loginetl counts no SQS requests by action, so there is no such panel.
    assert not [t for t in titles if "request" in t.lower()]
    queries = [p for p in panels if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" and p["targets"] for p in queries)
    exprs = " ".join(dashboard_expressions())
    for quantile in ("0.5", "0.9", "0.99"):
        assert f"histogram_quantile({quantile}," in exprs


@needs_promtool
def test_every_dashboard_expression_parses_as_promql(tmp_path):
    exprs = dashboard_expressions()
    records = [{"record": f"dashboard:expr_{n}", "expr": expr} for n, expr in enumerate(exprs)]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


# --- the names, against a real scrape ---------------------------------------------------------


def exposed(name: str, families: dict[str, str]) -> bool:
    """Whether series `name` is in a scrape with these {family: type}: a histogram's series
    carry _bucket/_sum/_count, a summary's _sum/_count, a counter's _total; a gauge's or an
    untyped family's series is the family's own name. No other suffix is stripped."""
    if families.get(name) in ("gauge", "untyped"):
        return True
    for suffix, types in (
        ("_bucket", {"histogram"}),
        ("_sum", {"histogram", "summary"}),
        ("_count", {"histogram", "summary"}),
        ("_total", {"counter"}),
    ):
        if name.endswith(suffix) and families.get(name.removesuffix(suffix)) in types:
            return True
    return False


def test_exposed_strips_only_the_suffix_the_family_type_has():
    families = {"h": "histogram", "c": "counter", "g_count": "gauge", "g": "gauge"}
    assert all(
        exposed(n, families) for n in ("h_bucket", "h_sum", "h_count", "c_total", "g_count", "g")
    )
    assert not any(
        exposed(n, families) for n in ("h", "c", "c_count", "g_total", "g_bucket", "h_total")
    )


def used_names() -> set[str]:
    names = set()
    for expr in [rule["expr"] for rule in rules()] + dashboard_expressions():
        names |= metric_names(expr)
    return names - recorded_names() - SYNTHETIC


def test_every_metric_the_rules_and_dashboard_use_is_exposed_by_a_real_run(
    queues, database_url, db
):
    init(database_url)
    proxy = proxy_for(database_url)  # cut once below, so loginetl_errors_total has a series
    port = free_port()
    process = start_loginetl(
        "run",
        "--follow",
        "--wait-time",
        "1",
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        env=env_for(queues.url, through(proxy, database_url)),
    )
    try:
        wait_until(lambda: scrape(port, "/healthz") == (200, "ok\n"))
        queues.send([*valid_bodies()[:3], "not json"])  # three rows, one dead letter
        wait_until(
            lambda: (
                'loginetl_messages_dead_lettered_total{reason="json"}'
                in scrape(port, "/metrics")[1]
            )
        )
        proxy.cut()
        queues.send(valid_bodies()[3:4])
        wait_until(lambda: 'loginetl_errors_total{kind="database"}' in scrape(port, "/metrics")[1])
        proxy.restore()
        wait_until(lambda: "loginetl_messages_loaded_total 4.0" in scrape(port, "/metrics")[1])
        status, text = scrape(port, "/metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
        proxy.cut()
    assert status == 200

    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    names = used_names()
    assert {"loginetl_messages_loaded_total", "loginetl_batch_seconds_bucket"} <= names
    assert not {n for n in names if not n.startswith("loginetl_")}, "a name loginetl cannot expose"
    assert [n for n in sorted(names) if not exposed(n, families)] == []
    assert sorted(names - samples) == []


def used_label_values() -> set[tuple[str, str, str]]:
    """(counter, label, value) for each label value the rules and the dashboard select."""
    counters = {
        "kind": "loginetl_errors_total",
        "reason": "loginetl_messages_dead_lettered_total",
        "action": "loginetl_sqs_requests_total",
    }
    exprs = [rule["expr"] for rule in rules()] + dashboard_expressions()
    return {
        (counters[label], label, value)
        for expr in exprs
        for label, value in re.findall(r'\b(kind|reason|action)="(\w+)"', expr)
    }


def first_scrape(args: list[str], env: dict) -> str:
    """/metrics of a fresh `loginetl run --follow ARGS`, as soon as it answers: nothing
    received, nothing failed yet."""
    port = free_port()
    process = start_loginetl(
        "run",
        "--follow",
        *args,
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        env=env,
    )
    try:
        wait_until(lambda: scrape(port, "/metrics")[0] == 200 or process.poll() is not None)
        assert process.poll() is None, process.stderr.read()
        return scrape(port, "/metrics")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)


@pytest.mark.parametrize("source", ["queue", "stream"])
def test_every_series_the_rules_use_exists_from_the_first_scrape(source, request, database_url):
    from loginetl.envelopes import ENVELOPES
    from loginetl.metrics import DEAD_LETTER_REASONS, ERROR_KINDS, OTHER_ERROR

    init(database_url)
    if source == "queue":
        queues = request.getfixturevalue("queues")
        args, env = ["--wait-time", "1"], env_for(queues.url, database_url)
    else:
        stream = request.getfixturevalue("stream")
        args, env = ["--stream", stream.name], request.getfixturevalue("stream_env")
    text = first_scrape(args, env)
    samples = {
        (s.name, *label): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        for label in (s.labels.items() or [("", "")])
    }
    names = {name for name, *_ in samples}
    assert sorted(used_names() - names) == []
    used = used_label_values()
    assert {("loginetl_errors_total", "kind", "database")} <= used  # the test reads the rules
    assert sorted(u for u in used if u not in samples) == []
    every = {("loginetl_errors_total", "kind", k) for k in (*ERROR_KINDS.values(), OTHER_ERROR)}
    every |= {("loginetl_messages_dead_lettered_total", "reason", r) for r in DEAD_LETTER_REASONS}
    every |= {("loginetl_messages_opened_total", "envelope", e) for e in ENVELOPES}
    assert {samples[series] for series in every} == {0.0}


def test_every_dead_letter_reason_the_code_gives_is_exported_from_the_start():
    """Each "category:" a reason can start with (InvalidMessage, the loader's database refusal,
    a stream record that is not text) is one DEAD_LETTER_REASONS names."""
    from loginetl.metrics import DEAD_LETTER_REASONS
    from loginetl.stream.client import NOT_UTF8

    source = "\n".join(p.read_text() for p in (ROOT / "loginetl").rglob("*.py"))
    made = set(re.findall(r'InvalidMessage\(\s*f?"(\w+):', source))
    made |= set(re.findall(r'rejected\[[^\]]+\] = f?"(\w+):', source))
    made.add(NOT_UTF8.split(":")[0])
    assert {"json", "schema", "database", "encoding"} <= made
    assert sorted(made - set(DEAD_LETTER_REASONS)) == []
