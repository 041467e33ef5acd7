"""Settings: where the queues and the database are, and the secrets that must never be shown.

Values come from command-line flags, the environment, or a `.env` file in the working directory,
in that order of precedence (the CLI loads `.env` without overriding the environment, and Typer
reads each option's env var). This module only holds and checks them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_QUEUE_URL = "http://localhost:4566/000000000000/login-queue"
DEFAULT_DATABASE_URL = "postgresql://postgres:postgres@localhost:5432/postgres"
LOCAL_REGION = "us-east-1"

# Every secret the process has seen, so that any text leaving it can be scrubbed.
_secrets: set[str] = set()


def remember_secret(value: str | None) -> None:
    if value:
        _secrets.add(value)


def secret_from_env(environ: Mapping[str, str], name: str) -> str | None:
    """The secret `name` from the environment: its value, or the content of the file that
    `name`_FILE names (the convention of the official postgres image and of Kubernetes secrets
    mounted as files), with one trailing newline stripped; None when neither is set. Both set,
    or a file that cannot be read, is a configuration error naming the variable (and the file,
    never its content). What a file holds is remembered as a secret, so it is never shown."""
    value, path = environ.get(name), environ.get(f"{name}_FILE")
    if value and path:
        raise ConfigError(f"both {name} and {name}_FILE are set: set only one of them")
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                value = file.read()
        except (OSError, UnicodeDecodeError) as error:
            reason = getattr(error, "strerror", None) or "not UTF-8 text"
            raise ConfigError(f"{name}_FILE: cannot read {path}: {reason}") from None
        value = value.removesuffix("\n").removesuffix("\r")
        remember_secret(value)  # (a value from the environment is remembered by its user)
    return value or None


def secret_configured(environ: Mapping[str, str], name: str) -> bool:
    """Whether `name` or `name`_FILE is set (without reading the file)."""
    return bool(environ.get(name) or environ.get(f"{name}_FILE"))


def redact(text: str) -> str:
    """Hide every known secret (mask key, database password) in `text`."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def redact_dsn(dsn: str) -> str:
    """The DSN with its password replaced by ***, for display."""
    dsn = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn)
    return re.sub(r"^([a-z]+://[^:/@]*:)[^@]*@", r"\1***@", dsn)


def dsn_password(dsn: str) -> str | None:
    match = re.search(r"password\s*=\s*('[^']*'|\S+)", dsn)
    if match:
        return match.group(1).strip("'")
    try:
        return urlsplit(dsn).password
    except ValueError:
        return None


def _visible_names(dsn: str) -> set[str]:
    if "://" not in dsn:
        fields = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", dsn))
        return {fields.get("user", "").strip("'"), fields.get("dbname", "").strip("'")}
    try:
        parts = urlsplit(dsn)
        return {parts.username or "", parts.path.lstrip("/")}
    except ValueError:
        return set()


def database_location(dsn: str) -> str:
    """host:port/dbname, to say which database an error is about without showing credentials."""
    if "://" not in dsn:
        fields = dict(re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", dsn))
        host, port = fields.get("host", "localhost"), fields.get("port", "5432")
        return f"{host.strip(chr(39))}:{port}/{fields.get('dbname', '')}"
    try:
        parts = urlsplit(dsn)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}{parts.path}"
    except ValueError:
        return "(unparseable database URL)"


def is_aws_host(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def service_endpoint(service: str, explicit: str | None) -> str | None:
    """AWS_ENDPOINT_URL_<SERVICE> when set, unless --endpoint-url was typed on the command line
    (an --endpoint-url equal to AWS_ENDPOINT_URL came from that variable, and yields to the
    service's own, as in every AWS SDK); else the explicit one."""
    specific = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}")
    if specific and (not explicit or explicit == os.environ.get("AWS_ENDPOINT_URL")):
        return specific
    return explicit or None


def endpoint_for(queue_url: str, endpoint_url: str | None) -> str | None:
    """The SQS endpoint: AWS_ENDPOINT_URL_SQS or the explicit one (see service_endpoint), else
    the queue URL's own host when it is not AWS."""
    if endpoint := service_endpoint("sqs", endpoint_url):
        return endpoint
    if is_aws_host(queue_url):
        return None
    parts = urlsplit(queue_url)
    return f"{parts.scheme}://{parts.netloc}"


def region_from_queue_url(queue_url: str) -> str | None:
    """AWS queue URLs name their region: https://sqs.eu-west-1.amazonaws.com/123/q."""
    match = re.match(r"https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", queue_url)
    return match.group(1) if match else None


def check_queue_url(url: str, flag: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.count("/") < 2:
        raise ConfigError(
            f"{flag} {url!r} is not a queue URL (expected http(s)://host/ACCOUNT/QUEUE)"
        )
    return url


@dataclass(frozen=True)
class Settings:
    queue_url: str = DEFAULT_QUEUE_URL
    database_url: str = DEFAULT_DATABASE_URL
    dlq_url: str | None = None  # None: discovered from the queue's RedrivePolicy
    endpoint_url: str | None = None
    stream: str | None = None  # a Kinesis data stream to read instead of the queue

    def __post_init__(self) -> None:
        check_queue_url(self.queue_url, "--queue-url")
        if self.dlq_url:
            check_queue_url(self.dlq_url, "--dlq-url")
        password = dsn_password(self.database_url)
        # A password equal to the user or database name (postgres:postgres@.../postgres, the
        # local default) is shown by naming them anyway; hiding every "postgres" in every
        # message would only garble them.
        if password not in _visible_names(self.database_url):
            remember_secret(password)

    @property
    def sqs_endpoint(self) -> str | None:
        # Reading a stream, SQS is only the dead-letter queue's home.
        url = self.dlq_url if self.stream and self.dlq_url else self.queue_url
        return endpoint_for(url, self.endpoint_url)

    @property
    def database_location(self) -> str:
        return database_location(self.database_url)

    def __repr__(self) -> str:
        return (
            f"Settings(queue_url={self.queue_url!r}, stream={self.stream!r}, "
            f"dlq_url={self.dlq_url!r}, endpoint_url={self.endpoint_url!r}, "
            f"database_url={redact_dsn(self.database_url)!r})"
        )
