"""Tests for L{opencue_gw.errors}: gRPC codes as HTTP answers, grpc-gateway style."""

from __future__ import annotations

import json

import pytest

from opencue_gw.errors import GRPC_CODE_NAMES, GatewayError, http_status_for, status_body

# grpc-gateway runtime/errors.go HTTPStatusFromCode, written out independently here.
EXPECTED_STATUS = [
    (0, 200),
    (1, 499),
    (2, 500),
    (3, 400),
    (4, 504),
    (5, 404),
    (6, 409),
    (7, 403),
    (8, 429),
    (9, 400),
    (10, 409),
    (11, 400),
    (12, 501),
    (13, 500),
    (14, 503),
    (15, 500),
    (16, 401),
]


@pytest.mark.parametrize(("code", "status"), EXPECTED_STATUS)
def test_http_status_table(code: int, status: int) -> None:
    """Each gRPC code maps to the HTTP status grpc-gateway answers with."""
    assert http_status_for(code) == status


@pytest.mark.parametrize("code", [17, 99, -1])
def test_unknown_code_is_500(code: int) -> None:
    """A code outside the gRPC table is answered as 500."""
    assert http_status_for(code) == 500


def test_status_body_exact_bytes() -> None:
    """The body is compact protojson-like JSON with an empty details list."""
    assert status_body(5, "Not Found") == b'{"code":5,"message":"Not Found","details":[]}'


def test_status_body_non_ascii_is_utf8_json() -> None:
    """A non-ASCII message is emitted as valid UTF-8 JSON that round-trips."""
    message = 'job «tëst» 失败 "quoted"\n'
    body = status_body(13, message)
    assert json.loads(body.decode("utf-8")) == {"code": 13, "message": message, "details": []}
    assert "失败".encode() in body


def test_gateway_error_derives_status_from_code() -> None:
    """Without an override, the HTTP status follows the gRPC code."""
    error = GatewayError(5, "no such job")
    assert (error.http_status, error.code, error.message) == (404, 5, "no such job")
    assert error.headers == {}
    assert error.body() == status_body(5, "no such job")


def test_gateway_error_http_status_override_and_headers() -> None:
    """An explicit http_status wins over the code's, and headers are kept."""
    error = GatewayError(12, "Method Not Allowed", http_status=405, headers={"Allow": "POST"})
    assert error.http_status == 405
    assert error.headers == {"Allow": "POST"}
    assert json.loads(error.body()) == {"code": 12, "message": "Method Not Allowed", "details": []}


def test_gateway_error_str_uses_code_name() -> None:
    """str() names the symbolic code, and an unknown code shows as its number."""
    assert str(GatewayError(16, "bad token")) == "UNAUTHENTICATED: bad token"
    assert GatewayError(42, "odd").code_name == "42"
    assert GRPC_CODE_NAMES[14] == "UNAVAILABLE"
