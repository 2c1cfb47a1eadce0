"""The clients' side of the event stream: the SSE parser and the watch line format."""

from __future__ import annotations

from opencue_gw.client.sse import SSEParser, describe


def test_parser_handles_any_split_comments_retry_and_multiline_data() -> None:
    """Events complete only at a blank line, whatever the chunking; comments are ignored."""
    stream = (
        b"retry: 2000\n\n: ping\n\n"
        b'id: 7\nevent: job\ndata: {"changes":["state"],\ndata: "job":{"name":"a"}}\n\n'
        b"event: shutdown\r\ndata: bye\r\n\r\n"
    )
    for size in (1, 3, len(stream)):
        parser = SSEParser()
        events = []
        for start in range(0, len(stream), size):
            events.extend(parser.feed(stream[start : start + size]))
        assert [(e.type, e.id) for e in events] == [("job", "7"), ("shutdown", None)]
        assert events[0].changes == ["state"] and events[0].object == {"name": "a"}
        assert events[1].data == "bye" and events[1].object == {}
        assert parser.retry_ms == 2000 and parser.last_id == "7"


def test_describe_prints_one_line_per_kind() -> None:
    """watch's lines name the change, the object and its numbers."""
    parser = SSEParser()
    job, frame, host, dropped = parser.feed(
        b'event: job\ndata: {"changes":["progress"],"job":{"name":"j","state":"PENDING",'
        b'"isPaused":true,"jobStats":{"runningFrames":1,"totalFrames":4}}}\n\n'
        b'event: frame\ndata: {"changes":["state"],"jobId":"x","frame":{"name":"0001-a",'
        b'"state":"DEAD","exitStatus":1,"retryCount":2,"lastResource":"host-1/2.0/0"}}\n\n'
        b'event: host\ndata: {"changes":["locked"],"host":{"name":"h","state":"UP",'
        b'"lockState":"LOCKED"}}\n\n'
        b'event: dropped\ndata: {"message":"too slow"}\n\n'
    )
    assert describe(job) == "job   progress           j PAUSED run 1 wait 0 dead 0 done 0/4"
    assert describe(frame) == "frame state              0001-a DEAD exit 1 retries 2 host-1"
    assert describe(host) == "host  locked             h UP LOCKED"
    assert describe(dropped) == "dropped too slow"
