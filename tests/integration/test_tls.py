# -*- test-case-name: tests.test_tls -*-
"""
TLS on both sides: HTTPS to clients (an C{ssl:} endpoint description, or
C{TLS_CERT_FILE}/C{TLS_KEY_FILE}), and TLS with client certificates to Cuebot. The
certificates are made in the test with C{cryptography}.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_process import REPO, TWISTD, free_port
from twisted.internet import reactor
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.threads import deferToThread
from twisted.web.resource import Resource

from opencue_gw.config import ConfigError, resolve_config
from opencue_gw.http.wire import body_limited_request
from opencue_gw.tap import GatewaySite, build_service

from gwtest import SECRET, GatewayHarness, token
from upstreams import ScriptedCuebot

SHOWS = "/show.ShowInterface/GetShows"


@dataclass
class Pki:
    """A CA and the certificates it issued, as PEM files."""

    ca: Path
    https_cert: Path
    https_key: Path
    cuebot_cert: Path
    cuebot_key: Path
    client_cert: Path
    client_key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    sans: list[x509.GeneralName] | None = None,
    usage: x509.ObjectIdentifier | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    issuer_name, issuer_key = issuer if issuer is not None else (_name(subject), key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Path:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A test CA, an HTTPS cert for localhost/127.0.0.1, a Cuebot cert and a client cert."""
    # A colon in the directory checks the endpoint description quoting too.
    where = tmp_path_factory.mktemp("pki") / "with:colon"
    where.mkdir()
    ca_cert, ca_key = _issue("Test CA", None)
    issuer = (ca_cert.subject, ca_key)
    https = _issue(
        "localhost",
        issuer,
        sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    cuebot = _issue(
        "cuebot.test",
        issuer,
        sans=[x509.DNSName("cuebot.test")],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    client = _issue("gateway", issuer, usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    ca = where / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca,
        https_cert=_write(where / "https.pem", *https),
        https_key=where / "https.key",
        cuebot_cert=_write(where / "cuebot.pem", *cuebot),
        cuebot_key=where / "cuebot.key",
        client_cert=_write(where / "client.pem", *client),
        client_key=where / "client.key",
    )


def _ssl_description(port: int, pki: Pki) -> str:
    return (
        f"ssl:{port}:privateKey={quoteStringArgument(str(pki.https_key))}"
        f":certKey={quoteStringArgument(str(pki.https_cert))}:interface=127.0.0.1"
    )


def _https(port: int, raw: bytes, ca: Path, server_hostname: str = "localhost") -> bytes:
    """Send raw HTTP over TLS, verifying the server against C{ca}; read to EOF."""
    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        with context.wrap_socket(plain, server_hostname=server_hostname) as conn:
            conn.sendall(raw)
            data = b""
            while True:
                try:
                    chunk = conn.recv(65536)
                except (ssl.SSLError, ConnectionResetError):
                    break
                if not chunk:
                    break
                data += chunk
            return data


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n".encode()


def _post(path: str, body: bytes = b"{}", length: int | None = None) -> bytes:
    declared = len(body) if length is None else length
    return (
        f"POST {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n"
        f"Authorization: Bearer {token()}\r\nContent-Length: {declared}"
        "\r\n\r\n"
    ).encode() + body


@pytest_twisted.ensureDeferred
async def test_https_via_ssl_endpoint_description(
    pki: Pki, scripted_gateway: GatewayHarness
) -> None:
    """The tree behind an ssl: endpoint answers over verified HTTPS, by name and by IP."""
    site = GatewaySite(scripted_gateway.resource)
    site.requestFactory = body_limited_request(1024)
    port = await serverFromString(reactor, _ssl_description(0, pki)).listen(site)
    number = port.getHost().port
    try:
        health = await deferToThread(_https, number, _get("/healthz"), pki.ca)
        shows = await deferToThread(
            _https, number, _post(SHOWS), pki.ca, server_hostname="127.0.0.1"
        )
        too_big = await deferToThread(_https, number, _post(SHOWS, b"", 4096), pki.ca)
    finally:
        await port.stopListening()
    assert health.startswith(b"HTTP/1.1 200 ")
    assert health.endswith(b'{"status":"ok"}')
    assert shows.startswith(b"HTTP/1.1 200 ")
    assert shows.endswith(b'{"shows":null}')
    # The raw 413 of the body limit also arrives intact through TLS.
    assert too_big.startswith(b"HTTP/1.1 413 ")
    assert json.loads(too_big.partition(b"\r\n\r\n")[2])["code"] == 8


class _SecureProbe(Resource):
    """Answers with what the request says about its connection's security."""

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"secure" if request.isSecure() else b"plain"


def _plain(port: int, raw: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(raw)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data


@pytest_twisted.ensureDeferred
async def test_request_knows_whether_its_own_connection_is_tls(pki: Pki) -> None:
    """
    The request factory remembers the answer per connection, never across connections:
    TLS and plain connections to one site, interleaved, each get their own.
    """
    site = GatewaySite(_SecureProbe())
    site.requestFactory = body_limited_request(1024)
    tls = await serverFromString(reactor, _ssl_description(0, pki)).listen(site)
    plain = reactor.listenTCP(0, site, interface="127.0.0.1")
    try:
        answers = [
            await deferToThread(_https, tls.getHost().port, _get("/"), pki.ca),
            await deferToThread(_plain, plain.getHost().port, _get("/")),
            await deferToThread(_https, tls.getHost().port, _get("/"), pki.ca),
            await deferToThread(_plain, plain.getHost().port, _get("/")),
        ]
    finally:
        await tls.stopListening()
        await plain.stopListening()
    assert [a.rpartition(b"\r\n\r\n")[2] for a in answers] == [
        b"secure",
        b"plain",
        b"secure",
        b"plain",
    ]


@pytest_twisted.ensureDeferred
async def test_https_refuses_an_untrusting_client(
    pki: Pki, scripted_gateway: GatewayHarness, tmp_path: Path
) -> None:
    """A client that trusts another CA fails the handshake; nothing is served in clear."""
    other_ca, _ = _issue("Other CA", None)
    other = tmp_path / "other.pem"
    other.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    port = await serverFromString(reactor, _ssl_description(0, pki)).listen(
        GatewaySite(scripted_gateway.resource)
    )
    number = port.getHost().port

    def plain_http() -> bytes:
        with socket.create_connection(("127.0.0.1", number), timeout=5) as conn:
            conn.sendall(_get("/healthz"))
            try:
                return conn.recv(65536)
            except ConnectionResetError:
                return b""

    try:
        with pytest.raises(ssl.SSLCertVerificationError):
            await deferToThread(_https, number, _get("/healthz"), other)
        assert b"200" not in await deferToThread(plain_http)
    finally:
        await port.stopListening()


def test_tls_env_makes_the_default_listener_ssl(pki: Pki) -> None:
    """TLS_CERT_FILE/TLS_KEY_FILE turn the REST_PORT listener into an ssl: endpoint."""
    config = resolve_config(
        {},
        {
            "JWT_SECRET": SECRET.decode(),
            "REST_PORT": "9443",
            "TLS_CERT_FILE": str(pki.https_cert),
            "TLS_KEY_FILE": str(pki.https_key),
        },
    )
    assert config.listen == (
        f"ssl:9443:privateKey={quoteStringArgument(str(pki.https_key))}"
        f":certKey={quoteStringArgument(str(pki.https_cert))}",
    )
    assert "\\:" in config.listen[0]  # the colon in the directory is escaped
    # An explicit --port wins over the TLS variables.
    explicit = resolve_config(
        {"port": ["tcp:8000"]},
        {
            "JWT_SECRET": SECRET.decode(),
            "TLS_CERT_FILE": str(pki.https_cert),
            "TLS_KEY_FILE": str(pki.https_key),
        },
    )
    assert explicit.listen == ("tcp:8000",)


@pytest_twisted.ensureDeferred
async def test_tls_env_listener_serves_https(pki: Pki, scripted_gateway: GatewayHarness) -> None:
    """The description built from TLS_CERT_FILE/TLS_KEY_FILE (colon in the path) serves HTTPS."""
    config = resolve_config(
        {},
        {
            "JWT_SECRET": SECRET.decode(),
            "REST_PORT": "8448",
            "TLS_CERT_FILE": str(pki.https_cert),
            "TLS_KEY_FILE": str(pki.https_key),
        },
    )
    description = config.listen[0].replace("ssl:8448:", "ssl:0:", 1) + ":interface=127.0.0.1"
    port = await serverFromString(reactor, description).listen(
        GatewaySite(scripted_gateway.resource)
    )
    try:
        answer = await deferToThread(_https, port.getHost().port, _get("/healthz"), pki.ca)
    finally:
        await port.stopListening()
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_daemon_serves_https_from_tls_env(pki: Pki, tmp_path: Path) -> None:
    """twistd with TLS_CERT_FILE/TLS_KEY_FILE and no --port serves HTTPS on REST_PORT."""
    port = free_port()
    log = tmp_path / "gateway.log"
    env = {
        **os.environ,
        "JWT_SECRET": SECRET.decode(),
        "REST_PORT": str(port),
        "TLS_CERT_FILE": str(pki.https_cert),
        "TLS_KEY_FILE": str(pki.https_key),
        "CUEBOT_ENDPOINT": f"127.0.0.1:{free_port()}",
    }
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", "opencue-gateway"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            answer = b""
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    answer = _https(port, _get("/healthz"), pki.ca)
                    break
                except OSError:
                    time.sleep(0.1)
            assert answer.startswith(b"HTTP/1.1 200 "), log.read_text()
            unauthenticated = _https(port, _post(SHOWS).replace(b"Authorization", b"X-No"), pki.ca)
            assert unauthenticated.startswith(b"HTTP/1.1 401 ")
        finally:
            proc.terminate()
            assert proc.wait(timeout=30) == 0
    assert "Traceback" not in log.read_text()


# --- TLS to Cuebot ---


@pytest.fixture
def tls_cuebot(pki: Pki) -> Iterator[ScriptedCuebot]:
    """A scripted Cuebot that serves TLS as cuebot.test and requires a client certificate."""
    credentials = grpc.ssl_server_credentials(
        [(pki.cuebot_key.read_bytes(), pki.cuebot_cert.read_bytes())],
        root_certificates=pki.ca.read_bytes(),
        require_client_auth=True,
    )
    server = ScriptedCuebot(credentials)
    yield server
    server.stop()


def _cuebot_options(pki: Pki, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "cuebot-ca": str(pki.ca),
        "cuebot-client-cert": str(pki.client_cert),
        "cuebot-client-key": str(pki.client_key),
        "cuebot-server-name": "cuebot.test",
    }
    options.update(extra)
    return {k: v for k, v in options.items() if v is not None}


async def _call_through(address: str, options: dict[str, Any]) -> tuple[int, Any]:
    harness = GatewayHarness(address, options=options)
    try:
        assert harness.config.cuebot_tls
        reply = await harness.post(SHOWS)
    finally:
        harness.close()
    return reply.status, reply.json()


@pytest_twisted.ensureDeferred
async def test_mutual_tls_to_cuebot(pki: Pki, tls_cuebot: ScriptedCuebot) -> None:
    """With the CA, a client certificate and the server name, calls reach a mTLS Cuebot."""
    status, body = await _call_through(tls_cuebot.address, _cuebot_options(pki))
    assert (status, body) == (200, {"shows": None})
    assert [s.method for s in tls_cuebot.seen] == [SHOWS]


@pytest_twisted.ensureDeferred
async def test_mutual_tls_without_client_cert_is_unavailable(
    pki: Pki, tls_cuebot: ScriptedCuebot
) -> None:
    """Without a client certificate the handshake fails: 503 JSON code 14, no call served."""
    options = _cuebot_options(pki, **{"cuebot-client-cert": None, "cuebot-client-key": None})
    status, body = await _call_through(tls_cuebot.address, options)
    assert status == 503
    assert set(body) == {"code", "message", "details"} and body["code"] == 14
    assert tls_cuebot.seen == []


@pytest_twisted.ensureDeferred
async def test_tls_to_cuebot_checks_the_server_name(pki: Pki, tls_cuebot: ScriptedCuebot) -> None:
    """Without --cuebot-server-name, a cert for cuebot.test does not match 127.0.0.1: 503."""
    options = _cuebot_options(pki, **{"cuebot-server-name": None})
    status, body = await _call_through(tls_cuebot.address, options)
    assert status == 503 and body["code"] == 14
    assert tls_cuebot.seen == []


# --- configuration errors ---


def _resolve(options: dict[str, Any] | None = None, **env: str) -> Any:
    return resolve_config(options or {}, {"JWT_SECRET": SECRET.decode(), **env})


def test_client_cert_without_key_is_a_config_error(pki: Pki) -> None:
    """A client certificate without its key, or a key alone, is refused by name."""
    with pytest.raises(ConfigError, match="--cuebot-client-cert/--cuebot-client-key"):
        _resolve({"cuebot-client-cert": str(pki.client_cert)})
    with pytest.raises(ConfigError, match="--cuebot-client-cert/--cuebot-client-key"):
        _resolve(CUEBOT_CLIENT_KEY_FILE=str(pki.client_key))


def test_non_pem_and_missing_files_are_config_errors(pki: Pki, tmp_path: Path) -> None:
    """A TLS file that is not PEM, or that does not exist, is refused naming the setting."""
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"\x00\x01 not a certificate")
    with pytest.raises(ConfigError, match=r"--cuebot-ca \(CUEBOT_CA_FILE\): .* is not a PEM"):
        _resolve({"cuebot-ca": str(junk)})
    with pytest.raises(ConfigError, match=r"--cuebot-client-key .*cannot read"):
        _resolve(
            {"cuebot-client-cert": str(pki.client_cert), "cuebot-client-key": str(junk) + ".x"}
        )
    with pytest.raises(ConfigError, match=r"TLS_CERT_FILE: .* is not a PEM file"):
        _resolve(TLS_CERT_FILE=str(junk), TLS_KEY_FILE=str(pki.https_key))
    with pytest.raises(ConfigError, match="TLS_KEY_FILE: no such file"):
        _resolve(TLS_CERT_FILE=str(pki.https_cert), TLS_KEY_FILE=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="TLS_CERT_FILE/TLS_KEY_FILE: set both"):
        _resolve(TLS_CERT_FILE=str(pki.https_cert))


def test_cuebot_tls_settings(pki: Pki) -> None:
    """A CA or client cert turns TLS to Cuebot on; CUEBOT_TLS alone uses the system CAs."""
    assert not _resolve().cuebot_tls
    with_ca = _resolve({"cuebot-ca": str(pki.ca)}, CUEBOT_SERVER_NAME="cuebot.test")
    assert with_ca.cuebot_tls and with_ca.cuebot_ca == pki.ca.read_bytes()
    assert with_ca.cuebot_server_name == "cuebot.test"
    system = _resolve(CUEBOT_TLS="true")
    assert system.cuebot_tls and system.cuebot_ca is None


def test_unusable_ssl_port_is_a_config_error(tmp_path: Path) -> None:
    """An ssl: --port whose key is PEM-looking garbage is a ConfigError, not a traceback."""
    fake = tmp_path / "fake.pem"
    fake.write_bytes(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    config = _resolve({"port": [f"ssl:0:privateKey={fake}:certKey={fake}"]})
    with pytest.raises(ConfigError, match="--port: cannot use"):
        build_service(config, reactor)
