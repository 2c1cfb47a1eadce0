# -*- test-case-name: tests.test_bodywriter -*-
"""
Large answers go out slice by slice at the reader's pace, over a real socket: a slow
client does not make the gateway queue the whole body in its transport.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import pytest_twisted
from opencue_proto import job_pb2
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from opencue_gw.http.bodywriter import SLICE_BYTES, STREAM_ABOVE
from opencue_gw.http.connections import ConnectionTracker
from opencue_gw.tap import GatewaySite

from gwtest import GatewayHarness, token
from upstreams import Script, ScriptedCuebot

FRAMES = 12_000


def _many_frames(request: Any) -> job_pb2.FrameGetFramesResponse:
    frames = [
        job_pb2.Frame(
            id=f"{i:08d}-frame-id",
            name=f"{i:04d}-render",
            layer_name="render",
            number=i,
            state=job_pb2.RUNNING,
            last_resource="host01/4.0/0",
            max_rss=123456789,
        )
        for i in range(FRAMES)
    ]
    return job_pb2.FrameGetFramesResponse(frames=job_pb2.FrameSeq(frames=frames))


@pytest.fixture
def served(scripted_gateway: GatewayHarness) -> Iterator[tuple[int, ConnectionTracker]]:
    """The tree on a real loopback port, with its connections visible to the test."""
    tracker = ConnectionTracker(GatewaySite(scripted_gateway.resource))
    port = reactor.listenTCP(0, tracker, interface="127.0.0.1")
    yield port.getHost().port, tracker
    port.stopListening()


def _queued(tracker: ConnectionTracker) -> int:
    """Bytes the gateway has handed to its transports but the kernel has not taken."""
    total = 0
    for wrapper in tracker.protocols:
        transport = wrapper.transport
        total += len(getattr(transport, "dataBuffer", b"")) + getattr(transport, "_tempDataLen", 0)
    return total


@pytest_twisted.ensureDeferred
async def test_slow_reader_does_not_queue_the_whole_body(
    scripted: ScriptedCuebot, served: tuple[int, ConnectionTracker]
) -> None:
    """While a client reads a multi-MB answer slowly, only a few slices wait in the gateway."""
    port, tracker = served
    scripted.scripts["/job.FrameInterface/GetFrames"] = Script(reply=_many_frames)
    body = b'{"job":"j","r":{"limit":20000}}'
    request = (
        f"POST /job.FrameInterface/GetFrames HTTP/1.1\r\nHost: gw\r\n"
        f"Authorization: Bearer {token()}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    peaks: list[int] = []

    def read_slowly() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            conn.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(
                next(
                    line.split(b":")[1]
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
            )
            chunks = [rest]
            received = len(rest)
            while received < length:
                chunk = conn.recv(32 * 1024)
                assert chunk, "connection closed early"
                chunks.append(chunk)
                received += len(chunk)
                if len(chunks) % 20 == 0:
                    time.sleep(0.02)
                    peaks.append(_queued(tracker))
            return b"".join(chunks)

    payload = await deferToThread(read_slowly)
    parsed = json.loads(payload)
    assert len(parsed["frames"]["frames"]) == FRAMES
    assert len(payload) > 4 * STREAM_ABOVE
    assert peaks and max(peaks) <= 4 * SLICE_BYTES, (max(peaks), len(payload))
