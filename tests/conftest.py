"""Shared fixtures: real gRPC upstreams on loopback and the gateway in front of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gwtest import GatewayHarness
from upstreams import ScriptedCuebot

# --- gateway fixtures ---


@pytest.fixture
def scripted() -> Iterator[ScriptedCuebot]:
    """A scripted OpenCue gRPC server for one test."""
    server = ScriptedCuebot()
    yield server
    server.stop()


@pytest.fixture
def scripted_gateway(scripted: ScriptedCuebot) -> Iterator[GatewayHarness]:
    """The gateway's resource tree in front of the scripted server."""
    harness = GatewayHarness(scripted.address)
    yield harness
    harness.close()


@pytest.fixture(scope="session")
def farm() -> Iterator[object]:
    """
    The Cuebot simulator, frozen (speed 0) and seeded, shared by read-only tests.

    Tests that change the farm use L{fresh_farm} instead.
    """
    from opencue_sandbox import SandboxConfig, start_sandbox

    sandbox = start_sandbox(SandboxConfig(host="127.0.0.1", port=0, seed=7, speed=0.0))
    yield sandbox
    sandbox.stop(grace=0.5)


@pytest.fixture
def fresh_farm() -> Iterator[object]:
    """A simulator of its own for a test that changes the farm."""
    from opencue_sandbox import SandboxConfig, start_sandbox

    sandbox = start_sandbox(SandboxConfig(host="127.0.0.1", port=0, seed=7, speed=0.0))
    yield sandbox
    sandbox.stop(grace=0.5)


@pytest.fixture
def gateway(farm: object) -> Iterator[GatewayHarness]:
    """The gateway's resource tree in front of the shared simulator."""
    harness = GatewayHarness(farm.address)  # type: ignore[attr-defined]
    yield harness
    harness.close()


@pytest.fixture
def fresh_gateway(fresh_farm: object) -> Iterator[GatewayHarness]:
    """The gateway in front of a simulator of its own."""
    harness = GatewayHarness(fresh_farm.address)  # type: ignore[attr-defined]
    yield harness
    harness.close()


# --- sandbox fixtures ---
from opencue_sandbox import Sandbox, SandboxConfig, start_sandbox  # noqa: E402


@pytest.fixture(scope="module")
def sandbox_frozen() -> Iterator[Sandbox]:
    """A demo sandbox shared by a module's read-only tests; no work progresses (speed 0)."""
    sb = start_sandbox(SandboxConfig(port=0, seed=7, speed=0))
    yield sb
    sb.stop()


@pytest.fixture
def sandbox_fresh() -> Iterator[Sandbox]:
    """A fresh frozen (speed 0) demo sandbox for a test that mutates it or advances it."""
    sb = start_sandbox(SandboxConfig(port=0, seed=7, speed=0))
    yield sb
    sb.stop()
