# -*- test-case-name: tests.integration.test_redis_store -*-
"""
Where Redis is, from C{--redis URL} (C{REDIS_URL}) and C{--redis-password-file}
(C{REDIS_PASSWORD_FILE}). Only parsing here, no client: the settings are checked before
the daemon starts, without importing anything that touches the reactor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from opencue_gw.settings import ConfigError

__all__ = ["RedisAddress", "parse_redis_url"]


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is and how to log in, from C{--redis URL}."""

    scheme: str
    """C{redis}, C{rediss} (TLS) or C{unix}."""
    host: str = ""
    port: int = 6379
    path: str = ""
    """The socket path of a C{unix://} address."""
    db: int = 0
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    """C{rediss://}: the CA certificates to check the server's against (PEM), if not
    the system's trust store."""

    def __str__(self) -> str:
        # Never the password: this is what logs and /readyz show.
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}/{self.db}"


def parse_redis_url(
    url: str,
    password_file: str | None = None,
    *,
    name: str = "--redis",
    password_name: str = "--redis-password-file",
) -> RedisAddress:
    """
    C{redis://[[user]:password@]host[:port][/db]}, C{rediss://...} (TLS, the server's
    certificate checked against the system's trust store, or against the PEM file
    named by C{?ssl_ca_certs=PATH}, as redis-py spells it), or
    C{unix://[[user]:password@]/path/to/socket[?db=N]}. The password may come from
    C{password_file} instead (its first line), never from both.

    @raise ConfigError: the URL or the file is not usable, naming the setting as C{name}
        (or C{password_name}) says, as the setting was given (option or variable).
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"{name}: expected a redis://, rediss:// or unix:// URL")
    query = parse_qs(parts.query)
    db_text = parts.path.lstrip("/") if scheme != "unix" else ""
    db_text = db_text or (query.get("db") or ["0"])[0]
    if not db_text.isdigit():
        raise ConfigError(f"{name}: the database must be a number, not {db_text!r}")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password_file:
        if password is not None:
            raise ConfigError(f"{name}: give the password in the URL or in a file, not both")
        try:
            with open(password_file, encoding="utf-8") as handle:
                password = handle.readline().strip()
        except OSError as error:
            raise ConfigError(
                f"{password_name}: cannot read {password_file!r}: {error.strerror}"
            ) from None
        if not password:
            raise ConfigError(f"{password_name}: {password_file!r} is empty")
    if scheme == "unix":
        if not parts.path:
            raise ConfigError(f"{name}: unix:// needs a socket path, e.g. unix:///run/redis.sock")
        return RedisAddress(
            "unix", path=parts.path, db=int(db_text), username=username, password=password
        )
    ca_files = query.get("ssl_ca_certs")
    ca_file = ca_files[0] if ca_files else None
    if ca_file is not None:
        if scheme != "rediss":
            raise ConfigError(f"{name}: ssl_ca_certs is for rediss:// addresses")
        if not os.access(ca_file, os.R_OK):
            raise ConfigError(f"{name}: cannot read ssl_ca_certs file {ca_file!r}")
    if not parts.hostname:
        raise ConfigError(f"{name}: no host in the URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError(f"{name}: the port must be a number from 1 to 65535") from None
    return RedisAddress(
        scheme,
        parts.hostname,
        port,
        db=int(db_text),
        username=username,
        password=password,
        ca_file=ca_file,
    )
