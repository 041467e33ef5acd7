"""The layout stays one a newcomer can hold in mind: the package at the top level, and no
module, class or function of the package or of scripts/ too long to read in one sitting."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 160
MAX_FUNCTION_BODY_LINES = 80
SOURCES = sorted(
    [
        *(ROOT / "loginetl").rglob("*.py"),
        *(ROOT / "scripts").glob("*.py"),
        *(ROOT / "benchmarks").glob("*.py"),
    ]
)


def test_the_package_lives_at_the_top_level():
    assert (ROOT / "loginetl" / "__init__.py").is_file()
    assert not (ROOT / "src").exists()


def test_the_run_has_one_room_per_role():
    rooms = {path.stem for path in (ROOT / "loginetl" / "pipeline").glob("*.py")}
    assert {"receiving", "loading", "settling", "giving_back", "state"} <= rooms
    assert (ROOT / "loginetl" / "peek.py").is_file()


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_room_is_short_enough_to_read_in_one_sitting(path):
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES
    too_long = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            lines = node.end_lineno - node.lineno + 1
            if lines > MAX_CLASS_LINES:
                too_long.append(f"class {node.name}: {lines} lines")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = node.body[-1].end_lineno - node.body[0].lineno + 1
            if lines > MAX_FUNCTION_BODY_LINES:
                too_long.append(f"def {node.name}: body of {lines} lines")
    assert not too_long


def test_each_cli_module_is_named_after_the_one_command_it_holds():
    import re

    found = {}
    for path in (ROOT / "loginetl" / "cli").glob("*.py"):
        commands = re.findall(r'^@command\("([\w-]+)"\)', path.read_text(), re.M)
        if commands:
            assert len(commands) == 1, f"{path.name} holds {commands}"
            assert path.stem == commands[0].replace("-", "_")
            found[commands[0]] = path.name
    assert len(found) == 11
    assert not (ROOT / "loginetl" / "render.py").exists()  # the CLI's rooms are under cli/
    assert not (ROOT / "loginetl" / "logs.py").exists()


def test_the_benchmarks_are_a_package_joined_by_imports_not_sys_path():
    assert (ROOT / "benchmarks" / "__init__.py").is_file()
    assert not list((ROOT / "scripts").glob("bench*.py"))
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert "sys.path.insert" not in path.read_text(), path.name


SERVER_FIXTURES = {
    "sqs",
    "sqs_endpoint",
    "queues",
    "db",
    "database_url",
    "postgres_admin_url",
    "password_url",
    "cli",
    "kinesis",
    "kinesis_endpoint",
    "stream",
    "stream_env",
}


def test_the_unit_tests_ask_for_no_server_and_conftest_holds_only_fixtures():
    for path in (ROOT / "tests" / "unit").glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                asked = {argument.arg for argument in node.args.args}
                assert not asked & SERVER_FIXTURES, f"{path.name}::{node.name} asks {asked}"
    conftest = ast.parse((ROOT / "tests" / "conftest.py").read_text())
    functions = [n for n in conftest.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    assert functions and all(
        any("fixture" in ast.unparse(d) for d in getattr(n, "decorator_list", []))
        for n in functions
    ), [n.name for n in functions]
    helpers = {p.stem for p in (ROOT / "tests").glob("*.py")} - {"__init__", "conftest"}
    assert all(name.startswith("test_") for name in helpers), helpers  # helpers: tests/support
