"""The package as users get it: `python -m build` makes a wheel and an sdist, declaring the
ranges of pyproject.toml; the wheel alone, in a fresh virtualenv that already holds
boto3==1.35.0 (another project's pin, older than the lock's), installs leaving it at 1.35.0,
runs `--version` and `--help`, carries the sample data `loginetl-stack seed` sends, and peeks a
real queue. The fresh venv installs from .wheelhouse/ (filled by scripts/venv.sh, online), with no
index: offline after the first set-up."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.support.data import MASK_KEY

ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = ROOT / ".wheelhouse"
BESIDE = "1.35.0"  # the boto3 already installed; scripts/venv.sh fetches it into WHEELHOUSE


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            "--wheel",
            "--sdist",
            "--outdir",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return {
        kind: next(out.glob(pattern))
        for kind, pattern in (("wheel", "*.whl"), ("sdist", "*.tar.gz"))
    }


def test_the_wheel_and_sdist_carry_the_package_and_its_data(built):
    names = zipfile.ZipFile(built["wheel"]).namelist()
    assert "loginetl/data/sample_data.json" in names and "loginetl/cli/run.py" in names
    assert not [name for name in names if name.startswith(("tests/", "benchmarks/"))]
    metadata = (
        zipfile.ZipFile(built["wheel"])
        .read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        .decode()
    )
    assert f"Version: {version('loginetl')}" in metadata
    lines = metadata.splitlines()
    requires = [
        Requirement(line.removeprefix("Requires-Dist:").strip())
        for line in lines
        if line.startswith("Requires-Dist") and "extra ==" not in line
    ]
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {(r.name, r.specifier) for r in requires} == {
        (r.name, r.specifier) for r in map(Requirement, declared)
    }
    assert not [r for r in requires if any(s.operator == "==" for s in r.specifier)]  # ranges


@pytest.mark.slow  # a fresh virtualenv and an install: about 30 s
def test_the_wheel_alone_installs_beside_an_older_boto3_and_peeks_a_queue(built, queues, tmp_path):
    assert (WHEELHOUSE / ".complete").is_file(), (
        "no .wheelhouse/: scripts/venv.sh downloads it once, online"
    )
    assert version("boto3") != BESIDE, "the lock's boto3: take another here and in scripts/venv.sh"
    home = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(home)
    python = home / "bin" / "python"
    install = [
        str(python),
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        str(WHEELHOUSE),
    ]
    subprocess.run([*install, f"boto3=={BESIDE}"], check=True, timeout=300)
    # pip's default: what is installed stays when the wheel's range admits it (WHEELHOUSE holds
    # a newer boto3 too, so an upgrade would have happened, not failed).
    subprocess.run([*install, str(built["wheel"])], check=True, timeout=300)
    boto3 = subprocess.run(
        [str(python), "-c", "import boto3; print(boto3.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert boto3.strip() == BESIDE
    subprocess.run([*install, "twine"], check=True, timeout=300)
    checked = subprocess.run(
        [str(python), "-m", "twine", "check", "--strict", str(built["wheel"]), str(built["sdist"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    loginetl = home / "bin" / "loginetl"
    outside = tmp_path / "elsewhere"  # no checkout on the path
    outside.mkdir()
    for args, expected in (
        (["--version"], version("loginetl")),
        (["--help"], "Usage: loginetl"),
        (["peek", "--help"], "Usage: loginetl peek"),
    ):
        done = subprocess.run(
            [str(loginetl), *args], cwd=outside, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and expected in done.stdout, done.stderr
    sample = subprocess.run(
        [
            str(python),
            "-c",
            "import json; from importlib.resources import files; "
            "print(len(json.loads((files('loginetl') / 'data' / 'sample_data.json').read_text())))",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sample.strip() == "100"
    queues.send([json.dumps({"user_id": "u", "ip": "203.0.113.9"})])
    env = {
        "LOGINETL_QUEUE_URL": queues.url,
        "LOGINETL_MASK_KEY": MASK_KEY,
        "PATH": "/usr/bin",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    peeked = subprocess.run(
        [str(loginetl), "peek", "--json"],
        cwd=outside,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert peeked.returncode == 0, peeked.stderr
    [message] = json.loads(peeked.stdout)["messages"]
    assert message["verdict"].startswith("schema: missing required field")
    assert "203.0.113.9" not in peeked.stdout
