"""What the tests share as data: the mask key and AWS settings they run with, the sample
messages, and the rows a test reads back."""

from __future__ import annotations

import json
from importlib import resources

import psycopg2.extras

MASK_KEY = "test-mask-key-0123456789abcdef-not-a-real-secret"


AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def sample_messages() -> list:
    path = resources.files("loginetl") / "data" / "sample_data.json"
    return json.loads(path.read_text())


def aws_client_args() -> dict:
    return {
        "region_name": AWS_ENV["AWS_DEFAULT_REGION"],
        "aws_access_key_id": AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": AWS_ENV["AWS_SECRET_ACCESS_KEY"],
    }


def rows(db, order_by: str = "sqs_message_id") -> list[dict]:
    with db.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
        cursor.execute(f"SELECT * FROM user_logins ORDER BY {order_by}")
        return [dict(row) for row in cursor.fetchall()]
