"""Secrets from files (`LOGINETL_MASK_KEY_FILE`, `LOGINETL_DATABASE_URL_FILE`, the key ring's
`LOGINETL_OLD_MASK_KEYS_FILE`), as Kubernetes and Docker secrets mount them."""

import json

import pytest

from loginetl import config
from loginetl.errors import ConfigError
from tests.support.data import MASK_KEY, rows, sample_messages


def test_a_secret_comes_from_its_file_with_one_trailing_newline_stripped(tmp_path):
    secret = tmp_path / "key"
    secret.write_text("a-key-from-a-file-0123456789\n\n")
    environ = {"LOGINETL_MASK_KEY_FILE": str(secret)}
    assert config.secret_from_env(environ, "LOGINETL_MASK_KEY") == "a-key-from-a-file-0123456789\n"
    secret.write_text("a-key-from-a-file-0123456789\r\n")
    assert config.secret_from_env(environ, "LOGINETL_MASK_KEY") == "a-key-from-a-file-0123456789"
    assert config.redact("x a-key-from-a-file-0123456789 y") == "x *** y"
    assert config.secret_from_env({"LOGINETL_MASK_KEY": "v"}, "LOGINETL_MASK_KEY") == "v"
    assert config.secret_from_env({}, "LOGINETL_MASK_KEY") is None


def test_any_secret_name_works_the_same_way_the_key_ring_too(tmp_path):
    ring = tmp_path / "old-keys"
    ring.write_text("old-key-one-0123456789,old-key-two-0123456789\n")
    environ = {"LOGINETL_OLD_MASK_KEYS_FILE": str(ring)}
    assert config.secret_from_env(environ, "LOGINETL_OLD_MASK_KEYS") == (
        "old-key-one-0123456789,old-key-two-0123456789"
    )
    assert config.secret_configured(environ, "LOGINETL_OLD_MASK_KEYS")
    assert not config.secret_configured({}, "LOGINETL_OLD_MASK_KEYS")


def test_the_key_ring_reads_its_retired_keys_from_a_file_one_per_line_or_comma_separated(
    tmp_path,
):
    from loginetl.masking import MaskKey, key_ring_from_env

    old, older = "old-key-one-0123456789", "old-key-two-0123456789"
    (tmp_path / "old-keys").write_text(f"{old}\n{older}\n")
    environ = {
        "LOGINETL_MASK_KEY": MASK_KEY,
        "LOGINETL_OLD_MASK_KEYS_FILE": str(tmp_path / "old-keys"),
    }
    ring = key_ring_from_env(environ)
    assert [key.key_id for key in ring.retired] == [MaskKey(old).key_id, MaskKey(older).key_id]
    assert config.redact(f"{old} {older}") == "*** ***"
    with pytest.raises(ConfigError, match="both LOGINETL_OLD_MASK_KEYS and"):
        key_ring_from_env(environ | {"LOGINETL_OLD_MASK_KEYS": old})


def test_a_value_and_its_file_together_are_a_configuration_error(tmp_path):
    (tmp_path / "key").write_text("x" * 20)
    environ = {"LOGINETL_MASK_KEY": "y" * 20, "LOGINETL_MASK_KEY_FILE": str(tmp_path / "key")}
    with pytest.raises(ConfigError, match="both LOGINETL_MASK_KEY and LOGINETL_MASK_KEY_FILE"):
        config.secret_from_env(environ, "LOGINETL_MASK_KEY")


def test_run_reads_the_mask_key_and_the_database_url_from_files(cli, queues, db, tmp_path):
    (tmp_path / "mask-key").write_text(MASK_KEY + "\n")
    (tmp_path / "database-url").write_text(db.url + "\n")
    files = {
        "LOGINETL_MASK_KEY": None,
        "LOGINETL_MASK_KEY_FILE": str(tmp_path / "mask-key"),
        "LOGINETL_DATABASE_URL": None,
        "LOGINETL_DATABASE_URL_FILE": str(tmp_path / "database-url"),
    }
    assert cli("init-db", env=files).exit_code == 0
    ids = queues.send([json.dumps(message) for message in sample_messages()[:5]])
    result = cli("run", "--json", env=files)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["loaded"] == len(ids)
    by_env = cli("verify-masking", "--json")  # the same key given as a value
    assert by_env.exit_code == 0, by_env.output
    assert len(rows(db)) == len(ids)


def test_the_database_url_flag_wins_over_the_file(cli, db, tmp_path):
    (tmp_path / "database-url").write_text("postgresql://nobody@127.0.0.1:1/none\n")
    env = {
        "LOGINETL_DATABASE_URL": None,
        "LOGINETL_DATABASE_URL_FILE": str(tmp_path / "database-url"),
    }
    assert cli("init-db", "--database-url", db.url, env=env).exit_code == 0
    refused = cli("init-db", env=env)
    assert refused.exit_code == 1 and "127.0.0.1:1/none" in refused.stderr


@pytest.mark.parametrize("name", ["LOGINETL_MASK_KEY", "LOGINETL_DATABASE_URL"])
def test_both_a_value_and_a_file_exit_2(cli, tmp_path, name):
    secret = tmp_path / "secret"
    secret.write_text("the-content-of-the-secret-file-0123")
    result = cli("run", env={f"{name}_FILE": str(secret)})
    assert result.exit_code == 2
    assert f"both {name} and {name}_FILE are set" in result.stderr
    assert "the-content-of-the-secret-file" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("name", ["LOGINETL_MASK_KEY", "LOGINETL_DATABASE_URL"])
def test_a_file_that_cannot_be_read_is_one_line_naming_it_exit_2(cli, tmp_path, name):
    missing = tmp_path / "no-such-secret"
    result = cli("run", env={name: None, f"{name}_FILE": str(missing)})
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {name}_FILE: cannot read {missing}: No such file or directory"
    ]
    unreadable = tmp_path / "a-folder"
    unreadable.mkdir()
    result = cli("run", env={name: None, f"{name}_FILE": str(unreadable)})
    assert result.exit_code == 2 and str(unreadable) in result.stderr


def test_binary_content_is_refused_without_showing_it(cli, tmp_path):
    secret = tmp_path / "key"
    secret.write_bytes(b"\xff\xfe secret bytes \x00")
    result = cli("run", env={"LOGINETL_MASK_KEY": None, "LOGINETL_MASK_KEY_FILE": str(secret)})
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.stderr and "secret bytes" not in result.output


def test_a_password_read_from_a_file_never_shows(cli, password_url, tmp_path):
    url, password = password_url
    parts = url.rpartition("/")
    (tmp_path / "database-url").write_text(f"{parts[0]}/no_such_database_here\n")
    result = cli(
        "status",
        "--json",
        env={
            "LOGINETL_DATABASE_URL": None,
            "LOGINETL_DATABASE_URL_FILE": str(tmp_path / "database-url"),
        },
    )
    assert result.exit_code == 1
    assert "no_such_database_here" in result.output
    assert password not in result.output
