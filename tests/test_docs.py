"""The docs: the README stays short, the mkdocs site builds in strict mode (a broken link or a
page left out of the nav fails it), and the CLI reference is what the code generates. The
examples in both run in tests/test_examples.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_the_readme_is_short_and_for_users():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    assert "scripts/demo.sh" in readme and "scripts/test.sh" in readme
    assert "Kafka" not in readme or "docs/kafka.md" in readme  # only what is built, linked


def test_the_site_builds_strict_with_every_page_in_its_nav(tmp_path):
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    in_nav = {page for entry in config["nav"] for page in entry.values()}
    assert in_nav == {page.name for page in (ROOT / "docs").glob("*.md")}
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()


def test_the_cli_reference_is_what_the_code_generates():
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "cli_docs.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reference = (ROOT / "docs" / "cli.md").read_text()
    for command in ("init-db", "run", "peek", "status", "replay-dlq", "verify-masking", "erase"):
        assert f"`loginetl {command}`" in reference
    assert "`loginetl-stack up`" in reference


def test_no_page_holds_a_control_character_and_examples_are_code_blocks(tmp_path):
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        text = page.read_text()
        bad = sorted({hex(ord(c)) for c in text if ord(c) < 32 and c not in "\n\t"})
        assert not bad, (page.name, bad)
    reference = (ROOT / "docs" / "cli.md").read_text()
    blocks = re.findall(r"^Examples?:\n\n(.*?)\n\n", reference, re.M | re.S)
    assert len(blocks) >= 11
    for block in blocks:
        assert block.startswith("```bash\n") and block.endswith("\n```"), block


def test_the_changelog_keeps_a_changelog():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog")
    assert "keepachangelog.com" in changelog and "## [Unreleased]" in changelog
    assert "## [0.1.0]" in changelog
