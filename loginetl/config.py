"""Settings: where the queues and the database are, and the secrets that must never be shown.

Each value comes from a command-line flag, the environment, or a `.env` file in the working
directory, in that order of precedence. The CLI loads `.env` into os.environ (without
overriding it) through `load_dotenv`, which records what it added: once loaded, a line of `.env`
and a real environment variable look alike, and only that record tells them apart (`Source`).

The SQS endpoint follows one rule, `sqs_endpoint`: the explicit endpoint (`--endpoint-url`,
`AWS_ENDPOINT_URL_SQS` or `AWS_ENDPOINT_URL`) is used unless the queue URL came from a
higher-precedence source than it, in which case the queue URL's own host is (AWS when it is an
AWS host). A queue URL carries its server in it, and a `--queue-url` typed on the command line
must not be sent to a server a `.env` or an exported variable names. Where a queue URL the
command calls (queue, dead-letter queue, --to-queue) and the endpoint in use still name
different servers, neither being AWS, and the endpoint does not outrank that URL, the command
stops (exit 2) naming both: nothing says which of the two was meant. This module only holds and
checks the settings, and applies that rule.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from urllib.parse import urlsplit

import dotenv

from .errors import ConfigError

DEFAULT_QUEUE_URL = "http://localhost:4566/000000000000/login-queue"
DEFAULT_DATABASE_URL = "postgresql://postgres:postgres@localhost:5432/postgres"
LOCAL_REGION = "us-east-1"

# Every secret the process has seen, so that any text leaving it can be scrubbed.
_secrets: set[str] = set()


def remember_secret(value: str | None) -> None:
    if value:
        _secrets.add(value)


class Source(IntEnum):
    """Where a setting's value came from; a higher one wins."""

    DEFAULT = 0
    DOTENV = 1  # a line of .env in the working directory
    ENVIRONMENT = 2  # a real environment variable
    COMMAND_LINE = 3


# The variables a .env file put into os.environ, with the value it gave each.
_from_dotenv: dict[str, str] = {}


def load_dotenv(path: Path) -> None:
    """Load `path` into os.environ without overriding what is set, and record what it added,
    so that `env_source` can rank it below the real environment. What an earlier load added
    (a second command in one process, run by the tests) and still holds is taken back first:
    that .env is not the environment either; what was set over it since stays recorded, in
    case the earlier value is put back."""
    for name, value in list(_from_dotenv.items()):
        if os.environ.get(name) == value:
            del os.environ[name], _from_dotenv[name]
    before = set(os.environ)
    dotenv.load_dotenv(path, override=False)
    _from_dotenv.update({name: os.environ[name] for name in set(os.environ) - before})


def env_source(name: str, environ: Mapping[str, str] | None = None) -> Source:
    """Where the variable `name` of `environ` (os.environ) came from: .env, the environment,
    or nowhere (unset or empty, which click and boto3 read as unset too)."""
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        return Source.DEFAULT
    return Source.DOTENV if _from_dotenv.get(name) == value else Source.ENVIRONMENT


@dataclass(frozen=True)
class Given:
    """A setting's value and where it came from: `name` is its flag, or its variable when it
    came from the environment or .env; `noun` what it is, in a message."""

    value: str
    source: Source
    name: str
    noun: str = "the value"

    @property
    def origin(self) -> str:
        if self.source is Source.COMMAND_LINE:
            return "from the command line"
        if self.source is Source.DEFAULT:
            return "the default"
        return f"{self.name} in {'.env' if self.source is Source.DOTENV else 'the environment'}"

    def shown(self) -> str:
        """`--queue-url URL (from the command line)`, `the queue URL URL (LOGINETL_QUEUE_URL in
        .env)`: the value and where it came from, as messages name it."""
        if self.source is Source.COMMAND_LINE:
            return f"{self.name} {self.value} ({self.origin})"
        return f"{self.noun} {self.value} ({self.origin})"


def secret_from_env(environ: Mapping[str, str], name: str) -> str | None:
    """The secret `name` from the environment: its value, or the content of the file that
    `name`_FILE names (the convention of the official postgres image and of Kubernetes secrets
    mounted as files), with one trailing newline stripped; None when neither is set. Both set,
    the one from the environment beats the one from .env; both at one level, or a file that
    cannot be read, is a configuration error naming the variable (and the file, never its
    content). What a file holds is remembered as a secret, so it is never shown."""
    value, path = environ.get(name), environ.get(f"{name}_FILE")
    if value and path:
        # Flag, then environment, then .env: the two at different levels, the higher one wins.
        direct, via_file = env_source(name, environ), env_source(f"{name}_FILE", environ)
        if direct == via_file:
            raise ConfigError(f"both {name} and {name}_FILE are set: set only one of them")
        value, path = (value, None) if direct > via_file else (None, path)
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


def _http_url(url: str) -> bool:
    """An http(s) URL naming a host, and a port that is a number if any."""
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def check_endpoint_url(given: Given) -> None:
    if not _http_url(given.value):
        raise ConfigError(
            f"{given.name} {given.value!r} is not an endpoint URL (expected http(s)://host[:port])"
        )


def explicit_endpoint(
    service: str, general: Given | None, environ: Mapping[str, str] | None = None
) -> Given | None:
    """The endpoint set for `service` ("sqs", "kinesis"): the one of `general` (--endpoint-url,
    or AWS_ENDPOINT_URL through it) and AWS_ENDPOINT_URL_<SERVICE> from the higher-precedence
    source; from one source the service's own wins, as in every AWS SDK (SQS and Kinesis may
    be on different servers). None when neither is set."""
    name = f"AWS_ENDPOINT_URL_{service.upper()}"
    source = env_source(name, environ)
    specific = None
    if source is not Source.DEFAULT:
        value = (os.environ if environ is None else environ)[name]
        specific = Given(value, source, name, "the endpoint")
    candidates = [given for given in (specific, general) if given is not None]
    chosen = max(candidates, key=lambda given: given.source, default=None)  # ties: the first
    if chosen is not None:
        check_endpoint_url(chosen)
    return chosen


def server(url: str) -> str:
    """The server `url` names, as host:port (the port its scheme's default when it names none),
    every loopback name as `localhost`: 127.0.0.0/8, ::1, and LocalStack's
    localhost.localstack.cloud names (sqs.us-east-1.localhost.localstack.cloud:4566 in the
    queue URLs it hands out), which resolve to 127.0.0.1."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if host in ("localhost", "localhost.localstack.cloud") or host.endswith(
        ".localhost.localstack.cloud"
    ):
        host = "localhost"
    else:
        try:
            host = "localhost" if ipaddress.ip_address(host).is_loopback else host
        except ValueError:  # a name, not an address
            pass
    return f"{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def host_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class Endpoint:
    """The SQS endpoint a command calls. `url` is what botocore is given (None: AWS's own, in
    the region of `home`, the queue URL it was chosen for); `source` the source of the setting
    that chose it, `via` where it came from, for messages; `outranked`: an endpoint was set but
    the queue URL beat it, so botocore must not read AWS_ENDPOINT_URL* itself."""

    url: str | None
    home: str
    source: Source
    via: str
    outranked: bool = False


def sqs_endpoint(home: Given, explicit: Given | None, used: Sequence[Given] = ()) -> Endpoint:
    """The SQS endpoint for the queue URL `home`, `explicit` being the endpoint set (see
    explicit_endpoint). It is `explicit`, unless `home` came from a higher-precedence source
    (flag, then environment, then .env), in which case it is `home`'s own host (None when that
    is an AWS host, as with no explicit endpoint at all): a URL typed on the command line is
    not sent to a server that .env names, and an endpoint typed is not overruled by a queue
    URL that .env names.

    Each queue URL in `used` (the ones the command calls) that names another server than the
    endpoint chosen, neither being an AWS host (LocalStack and moto take AWS-style queue URLs),
    and that the endpoint does not outrank, is a ConfigError naming both: its requests would
    reach another server than the one it names, and nothing says which of the two was meant.
    One the endpoint outranks (LOGINETL_DLQ_URL in .env beside a --queue-url typed) is asked
    of the endpoint's server, as a flag beats .env."""
    if explicit is not None and explicit.source >= home.source:
        endpoint = Endpoint(explicit.value, home.value, explicit.source, explicit.shown())
    else:
        url = None if is_aws_host(home.value) else host_of(home.value)
        named = home.name if home.source is Source.COMMAND_LINE else home.noun
        via = f"the endpoint {url or 'AWS'} (the host of {named}, {home.origin})"
        endpoint = Endpoint(url, home.value, home.source, via, outranked=explicit is not None)
    for given in used:
        if (
            endpoint.url is None
            or given.source < endpoint.source
            or is_aws_host(given.value)
            or is_aws_host(endpoint.url)
            or server(given.value) == server(endpoint.url)
        ):
            continue
        raise ConfigError(
            f"{given.shown()} and {endpoint.via} name different servers: "
            "point them at one server, or give the one meant at a higher precedence "
            "(flag > environment > .env)"
        )
    return endpoint


def two_sources(queue: Source, stream: Source) -> bool:
    """Whether a queue URL and a stream, given together, name two sources to read: unless the
    stream came from a higher-precedence source (a --stream typed beats a queue URL from the
    environment or .env, LOGINETL_STREAM in the environment one from .env), which one to read is
    not guessed. A queue URL outranking a stream is refused too, not read in its place: a
    stream asked for is never quietly replaced by a queue."""
    return queue is not Source.DEFAULT and stream <= queue


def region_from_queue_url(queue_url: str) -> str | None:
    """AWS queue URLs name their region: https://sqs.eu-west-1.amazonaws.com/123/q."""
    match = re.match(r"https?://sqs\.([a-z0-9-]+)\.amazonaws\.com", queue_url)
    return match.group(1) if match else None


def check_queue_url(url: str, flag: str) -> str:
    if not _http_url(url) or urlsplit(url).path.count("/") < 2:
        raise ConfigError(
            f"{flag} {url!r} is not a queue URL (expected http(s)://host/ACCOUNT/QUEUE)"
        )
    return url


# Each setting whose source matters: its flag, its variable, what it is in a message.
NAMES = {
    "queue_url": ("--queue-url", "LOGINETL_QUEUE_URL", "the queue URL"),
    "dlq_url": ("--dlq-url", "LOGINETL_DLQ_URL", "the dead-letter queue URL"),
    "to_queue": ("--to-queue", "LOGINETL_TO_QUEUE", "the destination queue URL"),
    "endpoint_url": ("--endpoint-url", "AWS_ENDPOINT_URL", "the endpoint"),
}


@dataclass(frozen=True)
class Sources:
    """Where the URLs of Settings (and replay-dlq's --to-queue) came from, as the CLI read them
    (cli.common.sources). None: given in code, ranked as typed, or the default when unset."""

    queue_url: Source | None = None
    dlq_url: Source | None = None
    endpoint_url: Source | None = None
    to_queue: Source | None = None

    def given(self, name: str, value: str | None) -> Given | None:
        """The setting `name` (a key of NAMES) holding `value`, with its source; None when it
        is unset."""
        if not value:
            return None
        source = getattr(self, name)
        if source is None:
            default = name == "queue_url" and value == DEFAULT_QUEUE_URL
            source = Source.DEFAULT if default else Source.COMMAND_LINE
        flag, variable, noun = NAMES[name]
        return Given(value, source, flag if source is Source.COMMAND_LINE else variable, noun)


@dataclass(frozen=True)
class Settings:
    queue_url: str = DEFAULT_QUEUE_URL
    database_url: str = DEFAULT_DATABASE_URL
    dlq_url: str | None = None  # None: discovered from the queue's RedrivePolicy
    endpoint_url: str | None = None  # --endpoint-url, or AWS_ENDPOINT_URL through it
    stream: str | None = None  # a Kinesis data stream to read instead of the queue
    topic: str | None = None  # a Kafka topic to read instead of the queue (kafka/)
    sources: Sources = field(default_factory=Sources)

    def __post_init__(self) -> None:
        for name in ("queue_url", "dlq_url"):
            if given := self.given(name):
                check_queue_url(given.value, given.name)
        password = dsn_password(self.database_url)
        # A password equal to the user or database name (postgres:postgres@.../postgres, the
        # local default) is shown by naming them anyway; hiding every "postgres" in every
        # message would only garble them.
        if password not in _visible_names(self.database_url):
            remember_secret(password)

    def given(self, name: str) -> Given | None:
        return self.sources.given(name, getattr(self, name))

    def sqs_route(self, also: Sequence[Given] = ()) -> Endpoint:
        """The SQS endpoint (see sqs_endpoint), checked against every queue URL the command
        calls: the queue and the dead-letter queue, and `also`. Reading a stream, SQS is only
        the dead-letter queue's home. The endpoint's host, with none set, is the queue URL's,
        or the dead-letter queue's when the queue URL is the default (no choice)."""
        queue, dlq = self.given("queue_url"), self.given("dlq_url")
        assert queue is not None, "a queue URL always has a value, the default at least"
        urls = [url for url in ([dlq] if self.stream else [queue, dlq]) if url]
        home = next((url for url in urls if url.source is not Source.DEFAULT), queue)
        explicit = explicit_endpoint("sqs", self.given("endpoint_url"))
        return sqs_endpoint(home, explicit, [*urls, *also])

    @property
    def sqs_endpoint(self) -> str | None:
        """The endpoint botocore is given for SQS; None: AWS's own."""
        return self.sqs_route().url

    @property
    def kinesis_endpoint(self) -> str | None:
        """The endpoint botocore is given for Kinesis; None: AWS's own."""
        chosen = explicit_endpoint("kinesis", self.given("endpoint_url"))
        return chosen.value if chosen else None

    @property
    def database_location(self) -> str:
        return database_location(self.database_url)

    def __repr__(self) -> str:
        return (
            f"Settings(queue_url={self.queue_url!r}, stream={self.stream!r}, "
            f"dlq_url={self.dlq_url!r}, endpoint_url={self.endpoint_url!r}, "
            f"database_url={redact_dsn(self.database_url)!r})"
        )
