"""
L{opencue_gw.shared.address} and L{opencue_gw.shared.store}: the C{--redis} URL, and
the connection to a real redis-server with its health: up when PING answers promptly,
local state at once when Redis is killed or paused, logged once per change, back when
Redis answers again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.task import deferLater

from opencue_gw.settings import ConfigError
from opencue_gw.shared.address import RedisAddress, parse_redis_url
from opencue_gw.shared.store import SharedStateMetrics, SharedStore, SharedStoreUnavailable

from redisserver import (
    RedisServer,
    TlsFiles,
    free_port,
    needs_redis,
    redis_server,
    shared_logs,
    until,
)

__all__ = ["redis_server", "shared_logs"]


async def sleep(seconds: float) -> None:
    """Let the reactor run for C{seconds}."""
    await deferLater(reactor, seconds)


async def started_store(url: str, **kw: Any) -> SharedStore:
    """A store on C{url}, probing, once Redis is in use."""
    store = SharedStore(parse_redis_url(url), reactor, probe_interval=0.1, **kw)
    store.start()
    await until(lambda: store.up)
    return store


# --- the URL


def test_url_forms() -> None:
    """redis://, rediss:// and unix:// with their passwords, users and databases."""
    assert parse_redis_url("redis://redis") == RedisAddress("redis", "redis", 6379)
    assert parse_redis_url("rediss://gw:s%40cret@cache.example:6380/2") == RedisAddress(
        "rediss", "cache.example", 6380, db=2, username="gw", password="s@cret"
    )
    assert parse_redis_url("redis://:pw@[::1]:7000") == RedisAddress(
        "redis", "::1", 7000, password="pw"
    )
    assert parse_redis_url("unix:///run/redis/redis.sock?db=3") == RedisAddress(
        "unix", path="/run/redis/redis.sock", db=3
    )


def test_password_from_file(tmp_path: Path) -> None:
    """
    The file's first line is the password; the URL then must not have one too. Errors
    name the setting as it was given.
    """
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    assert parse_redis_url("redis://r", str(secret)).password == "from-file"
    with pytest.raises(ConfigError, match="not both"):
        parse_redis_url("redis://:x@r", str(secret))
    with pytest.raises(ConfigError, match=r"^REDIS_PASSWORD_FILE: cannot read"):
        parse_redis_url("redis://r", str(tmp_path / "missing"), password_name="REDIS_PASSWORD_FILE")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://:secret@r", "expected a redis://"),
        ("redis://r/zero", "must be a number"),
        ("redis://r:99999", "port"),
        ("unix://", "socket path"),
        ("redis://", "no host"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    """A URL that cannot work is a configuration error naming the setting."""
    with pytest.raises(ConfigError, match=message) as refused:
        parse_redis_url(url)
    assert str(refused.value).startswith("--redis: ") and "secret" not in str(refused.value)


def test_address_shown_without_password() -> None:
    """What logs and /readyz show never holds the password."""
    shown = str(parse_redis_url("redis://user:hunter2@r:6379/1"))
    assert shown == "redis://r:6379/1"
    assert "hunter2" not in str(parse_redis_url("unix://:hunter2@/s.sock"))


# --- a real redis-server


@pytest_twisted.ensureDeferred
async def test_commands_and_status(redis_server: RedisServer, shared_logs: list[str]) -> None:
    """Connected: commands answer, /readyz details say Redis is in use, one log line."""
    registry = CollectorRegistry()
    store = await started_store(redis_server.url, metrics=SharedStateMetrics(registry))
    try:
        assert await store.command("SET", b"k", b"\x00v") == "OK"
        assert await store.command("GET", b"k") == b"\x00v"
        assert store.status() == (
            True,
            f"shared state in Redis at redis://127.0.0.1:{redis_server.port}/0",
        )
        assert registry.get_sample_value("opencue_gateway_redis_up") == 1
        assert shared_logs == ["using Redis at {redis}"]
    finally:
        await store.stop()


@needs_redis
@pytest_twisted.ensureDeferred
async def test_password_and_unix_socket(tmp_path: Path) -> None:
    """A server with a password: the URL's works, the password file's works over unix://."""
    server = RedisServer(tmp_path, "--requirepass", "pa ss")
    server.start()
    secret = tmp_path / "pw"
    secret.write_text("pa ss\n")
    stores: list[SharedStore] = []
    try:
        for address in (
            parse_redis_url(f"redis://:pa%20ss@127.0.0.1:{server.port}"),
            parse_redis_url(f"unix://{server.socket_path}", str(secret)),
        ):
            store = SharedStore(address, reactor, probe_interval=0.1)
            stores.append(store)
            store.start()
            await until(lambda: store.up)  # noqa: B023
            assert await store.command("PING") == "PONG"
    finally:
        for store in stores:
            await store.stop()
        server.stop()


@needs_redis
@pytest_twisted.ensureDeferred
async def test_wrong_password(tmp_path: Path, shared_logs: list[str]) -> None:
    """A refused password: local state, said once with the reason, the password unsaid."""
    server = RedisServer(tmp_path, "--requirepass", "right")
    server.start()
    store = SharedStore(
        parse_redis_url(f"redis://:wrong@127.0.0.1:{server.port}"), reactor, probe_interval=0.1
    )
    try:
        store.start()
        await until(lambda: bool(shared_logs), within=4.0)
        up, detail = store.status()
        assert not up and "wrong password" in detail and "wrong@" not in detail
        assert shared_logs == ["Redis at {redis} unavailable ({reason})"]
    finally:
        await store.stop()
        server.stop()


@needs_redis
@pytest_twisted.ensureDeferred
async def test_tls(tmp_path: Path) -> None:
    """
    rediss:// to a TLS-only server: the server's certificate is checked (against the
    URL's CA file) and commands run; without that CA the server is not trusted.
    """
    server = RedisServer(tmp_path, tls=TlsFiles(tmp_path))
    server.start()
    trusted = SharedStore(parse_redis_url(server.url), reactor, probe_interval=0.1)
    untrusted = SharedStore(
        parse_redis_url(f"rediss://127.0.0.1:{server.port}"), reactor, probe_interval=0.1
    )
    try:
        trusted.start()
        untrusted.start()
        await until(lambda: trusted.up)
        assert await trusted.command("SET", b"k", b"v") == "OK"
        await sleep(0.5)
        assert not untrusted.up
        with pytest.raises(SharedStoreUnavailable):
            await untrusted.command("GET", b"k")
    finally:
        await trusted.stop()
        await untrusted.stop()
        server.stop()


def test_ca_file_only_for_tls(tmp_path: Path) -> None:
    """ssl_ca_certs names a readable file, and only for rediss://."""
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    assert parse_redis_url(f"rediss://r?ssl_ca_certs={ca}").ca_file == str(ca)
    with pytest.raises(ConfigError, match="rediss"):
        parse_redis_url(f"redis://r?ssl_ca_certs={ca}")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_redis_url(f"rediss://r?ssl_ca_certs={tmp_path / 'none.pem'}")


@pytest_twisted.ensureDeferred
async def test_killed_and_restarted(redis_server: RedisServer, shared_logs: list[str]) -> None:
    """
    Redis killed: commands fail at once (never wait), one log line and one outage
    counted, /readyz details say so; restarted: back in use, one more log line.
    """
    registry = CollectorRegistry()
    store = await started_store(redis_server.url, metrics=SharedStateMetrics(registry))
    try:
        redis_server.stop()
        await until(lambda: not store.up)
        for _ in range(20):
            failed = store.command("GET", b"k")
            assert failed.called  # already answered: no wait at all
            with pytest.raises(SharedStoreUnavailable):
                await failed
        up, detail = store.status()
        assert not up and "using local state" in detail
        redis_server.start()
        await until(lambda: store.up, within=5.0)
        assert await store.command("PING") == "PONG"
        assert shared_logs == [
            "using Redis at {redis}",
            "Redis at {redis} unavailable ({reason})",
            "using Redis at {redis}",
        ]
        assert registry.get_sample_value("opencue_gateway_redis_outages_total") == 1
        assert registry.get_sample_value("opencue_gateway_redis_up") == 1
    finally:
        await store.stop()


@pytest_twisted.ensureDeferred
async def test_slow_redis(redis_server: RedisServer, shared_logs: list[str]) -> None:
    """
    A paused Redis (CLIENT PAUSE): a command gives up within the bound and switches to
    local state; later commands fail at once; back when PING answers promptly again.
    """
    store = await started_store(redis_server.url, timeout=0.05)
    try:
        redis_server.command("CLIENT", "PAUSE", 600, "ALL")
        asked = time.monotonic()
        with pytest.raises(SharedStoreUnavailable):
            await store.command("GET", b"k")
        took = time.monotonic() - asked
        assert 0.04 <= took < 0.25
        assert not store.up and store.reason.startswith("slow")
        failed = store.command("GET", b"k")
        assert failed.called
        with pytest.raises(SharedStoreUnavailable):
            await failed
        await until(lambda: store.up, within=3.0)
        assert await store.command("GET", b"k") is None
        assert shared_logs == [
            "using Redis at {redis}",
            "Redis at {redis} unavailable ({reason})",
            "using Redis at {redis}",
        ]
    finally:
        await store.stop()


@needs_redis
@pytest_twisted.ensureDeferred
async def test_unreachable_from_the_start(shared_logs: list[str]) -> None:
    """Nothing listening: local state, said once after the connect grace, never a wait."""
    store = SharedStore(
        parse_redis_url(f"redis://127.0.0.1:{free_port()}"), reactor, probe_interval=0.1
    )
    store.start()
    try:
        with pytest.raises(SharedStoreUnavailable):
            await store.command("PING")
        await until(lambda: bool(shared_logs), within=4.0)
        await sleep(0.3)
        assert shared_logs == ["Redis at {redis} unavailable ({reason})"]
        assert not store.status()[0]
    finally:
        await store.stop()
