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
    assert config.endpoint_for("http://localhost:4566/000000000000/q", None) == (
        "http://localhost:4566"
    )
    assert config.endpoint_for("https://sqs.eu-west-1.amazonaws.com/1/q", None) is None
    assert config.endpoint_for("https://sqs.eu-west-1.amazonaws.com/1/q", "http://x:1") == (
        "http://x:1"
    )
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
