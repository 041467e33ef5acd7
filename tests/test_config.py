"""Settings: defaults, endpoints, and secrets kept out of sight."""

import pytest

from loginetl import config
from loginetl.config import Settings
from loginetl.errors import ConfigError


def test_redact_dsn_hides_passwords_in_urls_and_keyword_strings():
    assert config.redact_dsn("postgresql://u:pw@h:5/db") == "postgresql://u:***@h:5/db"
    assert config.redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert config.redact_dsn("host=h password=pw dbname=d") == "host=h password=*** dbname=d"


def test_database_location_names_host_port_and_database_only():
    assert config.database_location("postgresql://u:pw@db.example:6543/logins") == (
        "db.example:6543/logins"
    )
    assert config.database_location("postgresql://localhost/x") == "localhost:5432/x"
    assert config.database_location("host=h port=7 dbname=d password=p") == "h:7/d"


def test_the_endpoint_follows_a_non_aws_queue_url():
    assert Settings(queue_url="http://localhost:4566/000000000000/q").sqs_endpoint == (
        "http://localhost:4566"
    )
    aws = "https://sqs.eu-west-1.amazonaws.com/1/q"
    assert Settings(queue_url=aws).sqs_endpoint is None
    assert Settings(queue_url=aws, endpoint_url="http://x:1").sqs_endpoint == "http://x:1"
    assert config.region_from_queue_url("https://sqs.eu-west-1.amazonaws.com/1/q") == "eu-west-1"


def test_settings_repr_hides_the_password_and_redact_hides_it_anywhere():
    settings = Settings(database_url="postgresql://u:very-secret-pw@h/db")
    assert "very-secret-pw" not in repr(settings)
    assert config.redact("failed with very-secret-pw in it") == "failed with *** in it"


def test_defaults_match_the_local_stack():
    settings = Settings()
    assert settings.queue_url == "http://localhost:4566/000000000000/login-queue"
    assert settings.database_url == "postgresql://postgres:postgres@localhost:5432/postgres"
    assert settings.sqs_endpoint == "http://localhost:4566"


@pytest.mark.parametrize("url", ["login-queue", "ftp://h/1/q", "http://h"])
def test_a_bad_queue_url_is_a_configuration_error(url):
    with pytest.raises(ConfigError):
        Settings(queue_url=url)


def test_a_password_equal_to_the_user_name_does_not_garble_messages():
    Settings(database_url="postgresql://postgres:postgres@localhost:5432/postgres")
    assert config.redact("database localhost:5432/postgres") == "database localhost:5432/postgres"
    Settings(database_url="postgresql://app:s3cret-pw@localhost:5432/postgres")
    assert config.redact("pw s3cret-pw in postgres") == "pw *** in postgres"


def test_a_secret_inside_a_longer_one_is_hidden_whole():
    # The database password "pw-9" inside the mask key: hiding the short one first would
    # leave "key-***-long-enough" for anyone to complete.
    config.remember_secret("pw-9")
    config.remember_secret("key-pw-9-long-enough")
    assert config.redact("key key-pw-9-long-enough, password pw-9") == "key ***, password ***"


def test_nothing_is_remembered_for_an_empty_or_missing_password():
    config.remember_secret(None)
    config.remember_secret("")
    assert config.redact("an error line") == "an error line"


@pytest.mark.parametrize(
    "dsn, password",
    [
        ("host=h password=pw dbname=d", "pw"),
        ("host=h password = 'two words' dbname=d", "two words"),
        ("host=h dbname=d password=X-secret-X", "X-secret-X"),  # only quotes are stripped
        ("postgresql://u:url-pw@h/db", "url-pw"),
        ("postgresql://u@h/db", None),
        ("host=h dbname=d", None),
    ],
)
def test_the_password_is_found_in_keyword_strings_and_urls(dsn, password):
    assert config.dsn_password(dsn) == password


def test_a_keyword_string_password_is_hidden_from_every_redacted_text():
    Settings(database_url="host=h user=app password='pw secret' dbname=logins")
    assert config.redact("login failed: pw secret") == "login failed: ***"
    Settings(database_url="host=h password=lonely-pw")  # no user, no database name
    assert config.redact("lonely-pw") == "***"


@pytest.mark.parametrize(
    "dsn, name",
    [
        ("postgresql://app:app@h/logins", "app"),
        ("postgresql://u:logins@h/logins", "logins"),
        ("postgresql://u:Xlogins@h/Xlogins", "Xlogins"),
        ("host=h user=app password=app dbname=d", "app"),
        ("host=h user=u password=logins dbname=logins", "logins"),
        ("host=h user='app' password='app' dbname=d", "app"),
        ("host=h user=u password='logins' dbname='logins'", "logins"),
        ("host=h user='Xena' password='Xena' dbname=d", "Xena"),
        ("host=h user=u password='Xdb' dbname='Xdb'", "Xdb"),
    ],
)
def test_a_password_equal_to_the_user_or_database_name_is_shown_as_that_name(dsn, name):
    Settings(database_url=dsn)
    assert config.redact(f"role {name} on database {name}") == f"role {name} on database {name}"


def test_database_location_fills_in_the_defaults_postgresql_uses():
    assert config.database_location("dbname=logins") == "localhost:5432/logins"
    assert config.database_location("host='db.example' port=6543 dbname=logins") == (
        "db.example:6543/logins"
    )
    assert config.database_location("host=h port=7") == "h:7/"
    assert config.database_location("postgresql:///logins") == "localhost:5432/logins"


def test_an_unparseable_database_url_is_named_as_such_never_shown():
    location = config.database_location("postgresql://u:secret-pw@h:notaport/db")
    assert location == "(unparseable database URL)"


@pytest.mark.parametrize(
    "queue_url, aws",
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/logins", True),
        ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/logins", True),
        ("http://localhost:4566/000000000000/logins", False),
        ("http://amazonaws.com.example:4566/000000000000/logins", False),
    ],
)
def test_aws_hosts_including_china_get_botocores_own_endpoint(queue_url, aws):
    assert config.is_aws_host(queue_url) is aws
    assert (Settings(queue_url=queue_url).sqs_endpoint is None) is aws


def test_only_aws_queue_urls_name_a_region():
    assert config.region_from_queue_url("https://sqs.cn-north-1.amazonaws.com.cn/1/q") == (
        "cn-north-1"
    )
    assert config.region_from_queue_url("http://localhost:4566/000000000000/q") is None


def test_a_bad_queue_url_names_its_flag_and_the_expected_form():
    expected = "is not a queue URL (expected http(s)://host/ACCOUNT/QUEUE)"
    with pytest.raises(ConfigError) as bad_queue:
        Settings(queue_url="login-queue")
    assert str(bad_queue.value) == f"--queue-url 'login-queue' {expected}"
    with pytest.raises(ConfigError) as bad_dlq:
        Settings(dlq_url="ftp://h/1/q")
    assert str(bad_dlq.value) == f"--dlq-url 'ftp://h/1/q' {expected}"


def test_https_queue_and_dead_letter_urls_are_accepted():
    settings = Settings(
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/logins",
        dlq_url="https://sqs.eu-west-1.amazonaws.com/123456789012/logins-dlq",
    )
    assert settings.dlq_url.endswith("/logins-dlq")
    assert settings.sqs_endpoint is None


def test_a_services_own_endpoint_variable_wins_over_the_general_one(monkeypatch):
    """AWS_ENDPOINT_URL_SQS / _KINESIS beside AWS_ENDPOINT_URL, as boto3 reads them: SQS and
    Kinesis may be on different servers. An --endpoint-url typed on the command line wins."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://general:1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://sqs:2")
    queue = "https://sqs.eu-west-1.amazonaws.com/1/q"
    env = config.Source.ENVIRONMENT
    from_env = config.Sources(queue_url=env, endpoint_url=env)
    general = Settings(queue_url=queue, endpoint_url="http://general:1", sources=from_env)
    assert general.sqs_endpoint == "http://sqs:2"
    assert Settings(queue_url=queue, sources=from_env).sqs_endpoint == "http://sqs:2"
    typed = config.Sources(queue_url=env, endpoint_url=config.Source.COMMAND_LINE)
    assert Settings(queue_url=queue, endpoint_url="http://typed:3", sources=typed).sqs_endpoint == (
        "http://typed:3"
    )
    assert general.kinesis_endpoint == "http://general:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", "http://kinesis:4")
    assert general.kinesis_endpoint == "http://kinesis:4"
    assert Settings().kinesis_endpoint == "http://kinesis:4"
    monkeypatch.delenv("AWS_ENDPOINT_URL_SQS")
    assert Settings(queue_url="http://localhost:4566/0/q").sqs_endpoint == "http://localhost:4566"


def test_reading_a_stream_the_dead_letter_queue_names_the_sqs_endpoint():
    settings = Settings(stream="logins", dlq_url="http://moto:5000/123456789012/dlq")
    assert settings.sqs_endpoint == "http://moto:5000"
    assert "stream='logins'" in repr(settings)


def test_every_aws_request_says_it_comes_from_loginetl(sqs_endpoint, monkeypatch):
    """One fixed User-Agent, botocore's name and versions and loginetl's (as CloudTrail shows
    it), AWS_SDK_UA_APP_ID kept; seen on real requests to moto."""
    from loginetl import __version__, sqs
    from loginetl.config import Settings
    from loginetl.stream.client import kinesis_client

    monkeypatch.setenv("AWS_SDK_UA_APP_ID", "billing-etl")
    seen = []
    queue = sqs.client(Settings(endpoint_url=sqs_endpoint))
    kinesis = kinesis_client(sqs_endpoint)
    for client in (queue, kinesis):
        client.meta.events.register(
            "before-send", lambda request, **_: seen.append(request.headers["User-Agent"])
        )
    queue.list_queues()
    kinesis.list_streams()
    assert len(seen) == 2 and len(set(seen)) == 1
    agent = seen[0].decode() if isinstance(seen[0], bytes) else seen[0]
    assert agent.startswith("Boto3/") and "Botocore/" in agent
    assert f" loginetl/{__version__} app/billing-etl" in agent
