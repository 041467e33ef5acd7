"""TLS to PostgreSQL: `sslmode=verify-full` against a server the test starts with `ssl=on` and a
certificate from a CA the test makes; a certificate that does not verify is one line naming
the database and the problem, exit 1 at once (not an outage: never retried for --retry-for)."""

import datetime
import json
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.ci import skip_or_fail
from tests.support.data import MASK_KEY, sample_messages
from tests.support.own_postgres import OwnPostgres, system_bin_dir

SERVER_NAME = "db.loginetl.test"  # resolved nowhere: the URL's hostaddr gives the address


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_server_cert(ca_key, ca_cert, dns_name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(dns_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """(server, folder with ca.pem and other-ca.pem): a PostgreSQL accepting TLS connections
    only, with a certificate for SERVER_NAME signed by ca.pem."""
    bin_dir = system_bin_dir()
    if bin_dir is None:
        skip_or_fail("no PostgreSQL built with OpenSSL here (the embedded wheel's is not)")
    folder = tmp_path_factory.mktemp("tls")
    ca_key, ca_cert = make_ca("loginetl test CA")
    _, other_ca = make_ca("some other CA")
    (folder / "ca.pem").write_bytes(pem(ca_cert))
    (folder / "other-ca.pem").write_bytes(pem(other_ca))
    server_key, server_cert = make_server_cert(ca_key, ca_cert, SERVER_NAME)
    server = OwnPostgres(bin_dir, f"Tls-{uuid.uuid4().hex[:12]}-pw", {"ssl": "on"})
    server.write("server.crt", pem(server_cert), 0o644)
    server.write("server.key", key_pem(server_key), 0o600)
    server.configure({"ssl_cert_file": "'server.crt'", "ssl_key_file": "'server.key'"})
    server.write(
        "pg_hba.conf",
        b"local all all trust\n"
        b"hostssl all all 127.0.0.1/32 scram-sha-256\n"
        b"hostnossl all all 0.0.0.0/0 reject\n",
    )
    server.start()
    yield server, folder
    server.remove()


def verified_url(server, folder, host=SERVER_NAME, ca="ca.pem", database="postgres") -> str:
    return server.url(
        host,
        database,
        hostaddr="127.0.0.1",
        sslmode="verify-full",
        sslrootcert=str(folder / ca),
    )


def test_verify_full_works_end_to_end(tls_server, cli, queues):
    server, folder = tls_server
    url = verified_url(server, folder)
    env = {"LOGINETL_DATABASE_URL": url}
    result = cli("init-db", "--json", env=env)
    assert result.exit_code == 0, result.output
    queues.send([json.dumps(message) for message in sample_messages()[:10]])
    result = cli("run", "--json", env=env)
    assert result.exit_code == 0, result.output
    loaded = json.loads(result.stdout)["loaded"]
    status = cli("status", "--json", env=env)
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["table"]["rows"] >= loaded > 0
    masking = cli("verify-masking", "--json", env=env | {"LOGINETL_MASK_KEY": MASK_KEY})
    assert masking.exit_code == 0, masking.output
    for output in (result.output, status.output, masking.output):
        assert server.password not in output


def test_the_server_refuses_plain_connections(tls_server, cli):
    server, _ = tls_server
    result = cli("init-db", env={"LOGINETL_DATABASE_URL": server.url(sslmode="disable")})
    assert result.exit_code == 1
    assert "no encryption" in result.stderr or "reject" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "host, ca, problem",
    [
        (SERVER_NAME, "other-ca.pem", "certificate verify failed"),
        ("wrong-name.loginetl.test", "ca.pem", "does not match host name"),
        (SERVER_NAME, "missing-ca.pem", "root certificate file"),
    ],
)
def test_a_certificate_that_does_not_verify_is_one_line_exit_1_never_retried(
    tls_server, cli, queues, host, ca, problem
):
    server, folder = tls_server
    url = verified_url(server, folder, host=host, ca=ca)
    for command in (["init-db"], ["run", "--retry-for", "120"], ["status"]):
        result = cli(*command, env={"LOGINETL_DATABASE_URL": url})
        assert result.exit_code == 1, (command, result.output)
        # One error line, and no retry (which would have warned "unavailable ...; retrying").
        said = result.stderr.strip().splitlines()
        (line,) = [line for line in said if line.startswith("Error:")]
        assert problem in line and "TLS" in line, said
        assert f"database {host}:{server.port}/postgres" in line
        assert not [line for line in said if "retrying" in line], said
        assert server.password not in result.output
