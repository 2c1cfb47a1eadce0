"""
A real C{redis-server} for tests: started on a free loopback port (and a unix socket)
in a temporary directory, stopped (or killed and restarted on the same port) on demand.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.logger import LogEvent, globalLogPublisher

__all__ = [
    "MISSING_REDIS",
    "PATIENT",
    "REDIS_SERVER",
    "RedisServer",
    "TlsFiles",
    "free_port",
    "needs_redis",
    "redis_server",
    "shared_logs",
    "until",
]

REDIS_SERVER = shutil.which("redis-server")
# Without redis-server a developer's run skips the Redis tests and says why; CI installs
# it (.ci/run), so there a missing server fails the run instead of hiding the gap.
MISSING_REDIS = REDIS_SERVER is None and not os.environ.get("CI")
SKIP_REASON = "redis-server is not installed (Debian: apt-get install redis-server)"
needs_redis = pytest.mark.skipif(MISSING_REDIS, reason=SKIP_REASON)
# The Redis wait of tests about sharing, not about falling back: generous, since a busy
# CI machine can stall the reactor or Redis itself for 100 ms, and a fallback there would
# count as a wrong answer. Tests of the bound set their own.
PATIENT = 0.5


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _encode(*args: Any) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class TlsFiles:
    """A test CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test redis CA")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca = directory / "ca.pem"
        self.cert = directory / "redis.pem"
        self.key = directory / "redis.key"
        self.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


class RedisServer:
    """One redis-server process, restartable on the same port; TLS only with C{tls}."""

    def __init__(self, directory: Path, *extra: str, tls: TlsFiles | None = None) -> None:
        assert REDIS_SERVER is not None
        self.directory = directory
        self.tls = tls
        self.port = free_port()
        self.socket_path = str(directory / "redis.sock")
        self.password: str | None = None
        if "--requirepass" in extra:
            self.password = extra[list(extra).index("--requirepass") + 1]
        self._extra = extra
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """C{redis://} URL of the TCP listener (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        if self.tls is not None:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.tls.ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server and wait (at most 5 s) until it answers PING."""
        log = open(self.directory / "redis.log", "ab")
        listen = ["--port", str(self.port)]
        if self.tls is not None:
            listen = [
                "--port",
                "0",
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.tls.cert),
                "--tls-key-file",
                str(self.tls.key),
                "--tls-ca-cert-file",
                str(self.tls.ca),
                "--tls-auth-clients",
                "no",
            ]
        self._process = subprocess.Popen(
            [
                str(REDIS_SERVER),
                *listen,
                "--bind", "127.0.0.1",
                "--unixsocket", self.socket_path,
                "--unixsocketperm", "700",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "no",
                "--enable-debug-command", "local",
                *self._extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 5.0
        while True:
            try:
                if self.command("PING") == b"+PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError((self.directory / "redis.log").read_text())
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL: no goodbye to its clients) and wait for it."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
            self._process = None

    def command(self, *args: Any) -> bytes:
        """Send one command on a fresh connection; the first line of the answer."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as plain:
            sock = plain
            if self.tls is not None:
                context = ssl.create_default_context(cafile=str(self.tls.ca))
                sock = context.wrap_socket(plain, server_hostname="127.0.0.1")
            try:
                return self._ask(sock, args)
            finally:
                sock.close()

    def _ask(self, sock: socket.socket, args: tuple[Any, ...]) -> bytes:
        if self.password:
            sock.sendall(_encode("AUTH", self.password))
            sock.recv(64)
        sock.sendall(_encode(*args))
        data = b""
        while not data.endswith(b"\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data.split(b"\r\n", 1)[0]


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for one test, stopped afterwards."""
    if MISSING_REDIS:
        pytest.skip(SKIP_REASON)
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def shared_logs() -> Iterator[list[str]]:
    """The shared-state log lines of the test, as their format up to the first ';'."""
    lines: list[str] = []

    def observer(event: LogEvent) -> None:
        text = event.get("log_format") or ""
        if text.startswith("Shared state"):
            lines.append(text.split(";")[0].split(":", 1)[1].strip())

    globalLogPublisher.addObserver(observer)
    yield lines
    globalLogPublisher.removeObserver(observer)


async def until(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Let the reactor run until C{predicate()} holds (at most C{within} seconds)."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await deferLater(reactor, 0.02)
