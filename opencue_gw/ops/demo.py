# -*- test-case-name: tests.integration.test_startup -*-
"""
C{--demo}: the gateway with its own simulated Cuebot, for trying it on a laptop.

The simulator runs in this process on a free loopback port; the gateway's channel is
pointed at it once it is up. A random secret is generated per run and a token for it is
shown on the terminal (not in the log) before twistd starts logging.
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any, TextIO

from twisted.application.service import Service
from twisted.logger import Logger

from opencue_gw.auth.tokens import mint_token
from opencue_gw.logs import GATEWAY_OBSERVER

__all__ = ["DEMO_TOKEN_TTL", "DemoFarmService", "announce_demo", "demo_secret"]

DEMO_TOKEN_TTL = 24 * 3600.0


def demo_secret() -> bytes:
    """A fresh secret for this run, so a demo can never be reached with a known one."""
    return secrets.token_urlsafe(32).encode("ascii")


def announce_demo(
    secret: bytes,
    now: float,
    listen: str,
    token_file: str | None,
    out: TextIO = sys.stdout,
) -> str:
    """Mint the demo token and tell the user how to use it; returns the token."""
    token = mint_token(secret, sub="demo-user", role="admin", now=now, ttl=DEMO_TOKEN_TTL)
    port = listen.split(":")[1] if listen.startswith("tcp:") else "8448"
    if token_file:
        # Private from the first byte: created 0600, and an existing file narrowed first.
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as file:
            os.fchmod(fd, 0o600)
            file.write(token + "\n")
    out.write(
        "OpenCue gateway demo: a simulated farm behind the gateway.\n"
        f"Token (valid 24 h, this run only):\n\n    export TOKEN={token}\n"
        "    export OPENCUE_GATEWAY_TOKEN=$TOKEN   # for the opencue-gw command line\n\n"
        "Try:\n"
        f'    curl -X POST -H "Authorization: Bearer $TOKEN" '
        f"localhost:{port}/show.ShowInterface/GetShows -d '{{}}'\n"
        f"    the live farm page at http://localhost:{port}/ui (paste the token once)\n"
        f"    and the API browser at http://localhost:{port}/docs\n\n"
    )
    out.flush()
    return token


class DemoFarmService(Service):
    """Runs the Cuebot simulator for the life of the gateway."""

    log = Logger(observer=GATEWAY_OBSERVER)

    def __init__(self, seed: int, speed: float) -> None:
        self._seed = seed
        self._speed = speed
        self.sandbox: Any = None

    @property
    def address(self) -> str:
        """Where the simulator listens; known once the service has started."""
        if self.sandbox is None:
            raise RuntimeError("the demo farm has not started")
        return str(self.sandbox.address)

    def startService(self) -> None:
        """Start the simulator on a free loopback port."""
        from opencue_sandbox import SandboxConfig, start_sandbox

        super().startService()
        self.sandbox = start_sandbox(
            SandboxConfig(host="127.0.0.1", port=0, seed=self._seed, speed=self._speed)
        )
        self.log.info(
            "Demo farm (simulated Cuebot) at {address}, seed {seed}, speed {speed}x",
            address=self.sandbox.address,
            seed=self._seed,
            speed=self._speed,
        )

    def stopService(self) -> None:
        """Stop the simulator after the gateway has drained."""
        super().stopService()
        if self.sandbox is not None:
            self.sandbox.stop(grace=1.0)
