"""The stack's files: the .env file with the settings for loginetl, and the stack folder."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from dotenv import dotenv_values

from .postgres import PG_PASSWORD, postgres_dsn
from .processes import StackError
from .sqs import ACCOUNT_ID, DLQ_NAME, QUEUE_NAME, REGION, sqs_endpoint

STACK_MARKER = ".loginetl-stack"  # says "this folder is a stack": down --purge removes nothing else


# --- env file --------------------------------------------------------------------------------

_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    try:
        return {key: value or "" for key, value in dotenv_values(path).items()}
    except OSError as exc:
        raise StackError(f"cannot read {path}: {exc}") from exc


def stack_settings(
    sqs_port: int, pg_port: int, mask_key: str, kinesis_endpoint: str
) -> dict[str, str]:
    endpoint = sqs_endpoint(sqs_port)
    return {
        "LOGINETL_QUEUE_URL": f"{endpoint}/{ACCOUNT_ID}/{QUEUE_NAME}",
        "LOGINETL_DLQ_URL": f"{endpoint}/{ACCOUNT_ID}/{DLQ_NAME}",
        "AWS_ENDPOINT_URL": endpoint,
        # The stream's server (kinesis-mock, or moto's at the SQS endpoint). LOGINETL_STREAM is
        # not written: it would turn every `loginetl run` to the stream; `--stream` chooses it.
        "AWS_ENDPOINT_URL_KINESIS": kinesis_endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": REGION,
        "LOGINETL_DATABASE_URL": postgres_dsn(PG_PASSWORD, pg_port),
        "LOGINETL_MASK_KEY": mask_key,
        # moto's ReceiveMessage is not atomic across threads: with several receivers a message
        # can be delivered twice (loginetl then counts a duplicate). One receiver keeps the
        # demo's counts exact; LocalStack and AWS take the default.
        "LOGINETL_CONCURRENCY": "1",
        "LOGINETL_WAIT_TIME": "1",
    }


def merge_env_file(path: Path, settings: dict[str, str]) -> None:
    """Write settings into the env file: replace their lines, append the missing, keep the rest.

    Written whole to a temporary file and renamed, readable by the owner only (it holds the key).
    """
    path = path.resolve()
    try:
        lines = (
            path.read_text().splitlines()
            if path.exists()
            else ["# Written by `loginetl-stack up`; lines it does not own are kept."]
        )
        pending = dict(settings)
        merged = []
        for line in lines:
            match = _ENV_LINE.match(line)
            key = match.group(1) if match else None
            if key in pending:
                merged.append(f"{key}={pending.pop(key)}")
            elif key not in settings:  # a second line for a key already written is dropped
                merged.append(line)
        merged += [f"{key}={value}" for key, value in pending.items()]
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # 0600
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("\n".join(merged) + "\n")
            os.replace(tmp, path)
        except OSError:
            os.unlink(tmp)
            raise
    except OSError as exc:
        raise StackError(f"cannot write {path}: {exc}") from exc


# --- the stack folder ------------------------------------------------------------------------


def check_can_write(path: Path) -> None:
    """Fail when the folder of path is missing or not writable: checked before anything starts,
    so that `up` does not stop halfway."""
    folder = path.resolve().parent
    if not folder.is_dir():
        raise StackError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StackError(f"cannot write {path}: the folder {folder} is not writable")


def make_stack_dir(stack_dir: Path) -> None:
    """Create the stack folder and mark it as one, so that `down --purge` may remove it."""
    try:
        stack_dir.mkdir(parents=True, exist_ok=True)
        marker = stack_dir / STACK_MARKER
        if not marker.exists():
            marker.write_text("A loginetl local stack; `loginetl-stack down --purge` removes it.\n")
    except OSError as exc:
        raise StackError(f"cannot create {stack_dir}: {exc}") from exc


def check_purgeable(stack_dir: Path) -> None:
    """Refuse a folder that is neither a stack folder nor empty: purging removes only those."""
    if not (stack_dir / STACK_MARKER).exists() and any(stack_dir.iterdir()):
        raise StackError(f"refusing to remove {stack_dir}: it is not a loginetl stack folder")


def purge_stack_dir(stack_dir: Path) -> bool:
    """Remove the stack folder; False when there was none. Refuses a folder that is not a stack."""
    if not stack_dir.exists():
        return False
    check_purgeable(stack_dir)
    try:
        shutil.rmtree(stack_dir)
    except OSError as exc:
        raise StackError(f"cannot remove {stack_dir}: {exc}") from exc
    return True
