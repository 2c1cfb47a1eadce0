# -*- test-case-name: tests.test_ratelimit -*-
"""
Per-caller rate limiting: the token buckets on a fake clock, and the limiter in the
resource tree (headers on every answer, 429 JSON when empty, a bucket per subject, per
role overrides from the policy file), synchronously in front of a fake upstream.
"""

from __future__ import annotations

import jwt
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from opencue_gw.auth.bearer import Identity
from opencue_gw.auth.policy import parse_policy
from opencue_gw.errors import GatewayError
from opencue_gw.http.ratelimit import Decision, TokenBuckets, caller_key
from opencue_gw.testing import (
    EPOCH,
    TEST_SECRET,
    FakeUpstream,
    GatewayUnderTest,
    HTTPReply,
    mint_test_token,
)
from opencue_gw.upstream.rpcs import load_rpcs

SECRET = TEST_SECRET
token = mint_test_token

SHOWS = "/show.ShowInterface/GetShows"
HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


class TokenBucketTests(SynchronousTestCase):
    """The bucket arithmetic and the numbers the headers report."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.buckets = TokenBuckets(self.clock, rate=1.0, burst=3.0)

    def take(self, key: str = "sub:a") -> Decision:
        return self.buckets.take(key, self.buckets.rate, self.buckets.burst)

    def test_burst_then_refusal(self) -> None:
        """A full bucket lets `burst` requests through at once, then refuses."""
        decisions = [self.take() for _ in range(4)]
        self.assertEqual([d.allowed for d in decisions], [True, True, True, False])
        self.assertEqual([d.remaining for d in decisions], [2, 1, 0, 0])
        self.assertEqual([d.limit for d in decisions], [3, 3, 3, 3])
        self.assertEqual([d.reset for d in decisions], [1, 2, 3, 3])
        self.assertEqual([d.retry_after for d in decisions], [0, 0, 0, 1])

    def test_refill_over_time(self) -> None:
        """Tokens come back at `rate` per second, never beyond the burst."""
        for _ in range(3):
            self.take()
        self.clock.advance(1.5)
        first = self.take()
        self.assertTrue(first.allowed)
        self.assertEqual((first.remaining, first.reset), (0, 3))
        self.assertFalse(self.take().allowed)
        self.clock.advance(3600)
        again = self.take()
        self.assertEqual((again.remaining, again.reset), (2, 1))

    def test_retry_after_rounds_up_the_wait(self) -> None:
        """Retry-After is the whole seconds until one token is back, at least 1."""
        slow = TokenBuckets(self.clock, rate=0.25, burst=1.0)
        self.assertTrue(slow.take("k", 0.25, 1.0).allowed)
        refused = slow.take("k", 0.25, 1.0)
        self.assertEqual((refused.allowed, refused.retry_after, refused.reset), (False, 4, 4))
        self.clock.advance(3.5)
        refused = slow.take("k", 0.25, 1.0)
        self.assertEqual((refused.allowed, refused.retry_after), (False, 1))
        self.clock.advance(0.5)
        self.assertTrue(slow.take("k", 0.25, 1.0).allowed)

    def test_headers_of_a_refusal(self) -> None:
        """A refusal reports the three X-RateLimit headers plus Retry-After."""
        for _ in range(3):
            self.assertNotIn("Retry-After", self.take().headers())
        self.assertEqual(
            self.take().headers(),
            {
                "X-RateLimit-Limit": "3",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": "3",
                "Retry-After": "1",
            },
        )

    def test_keys_have_separate_buckets(self) -> None:
        """Emptying one caller's bucket leaves another's full."""
        for _ in range(4):
            self.take("sub:a")
        self.assertEqual(self.take("sub:b").remaining, 2)

    def test_burst_below_one_still_allows_one_request(self) -> None:
        """A burst under 1 is treated as 1, so the limiter never refuses everything."""
        tiny = TokenBuckets(self.clock, rate=1.0, burst=0.2)
        self.assertEqual(tiny.burst, 1.0)
        self.assertTrue(tiny.take("k", tiny.rate, tiny.burst).allowed)

    def test_rate_for_overrides_per_role(self) -> None:
        """rate_for gives a role its own (rate, burst); others and anonymous get the default."""

        def rate_for(identity: Identity) -> tuple[float, float] | None:
            return {"render": (50.0, 100.0), "odd": (2.0, 0.0)}.get(identity.role or "")

        buckets = TokenBuckets(self.clock, rate=1.0, burst=3.0, rate_for=rate_for)
        self.assertEqual(buckets.limits_for(Identity("a", "render")), (50.0, 100.0))
        self.assertEqual(buckets.limits_for(Identity("a", "odd")), (2.0, 1.0))
        self.assertEqual(buckets.limits_for(Identity("a", "viewer")), (1.0, 3.0))
        self.assertEqual(buckets.limits_for(None), (1.0, 3.0))

    def test_policy_rate_for_fits_the_hook(self) -> None:
        """A policy file's role rate is what the buckets use for that role."""
        methods = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
        policy = parse_policy(
            b'[roles.bulk]\nallow = ["*"]\nrate_limit_rps = 20\n', methods, source="t.toml"
        )
        buckets = TokenBuckets(self.clock, rate=1.0, burst=3.0, rate_for=policy.rate_for)
        bulk = Identity("a", "bulk", claims={"role": "bulk"})
        self.assertEqual(buckets.limits_for(bulk), (20.0, 20.0))

    def test_caller_key_is_subject_else_address(self) -> None:
        """The bucket key is the token subject, or the client address when there is none."""
        request = DummyRequest([b""])
        request.client = IPv4Address("TCP", "10.1.2.3", 5555)
        self.assertEqual(caller_key(Identity("alice", None), request), "sub:alice")
        self.assertEqual(caller_key(Identity(None, "admin"), request), "addr:10.1.2.3")
        self.assertEqual(caller_key(Identity("", "admin"), request), "addr:10.1.2.3")
        self.assertEqual(caller_key(None, request), "addr:10.1.2.3")


# --- through the resource tree ---


def _limit_headers(reply: HTTPReply) -> dict[str, str | None]:
    return {name: reply.header(name) for name in HEADERS}


@pytest.fixture
def limited() -> GatewayUnderTest:
    """The gateway with RATE_LIMIT_RPS=1 and RATE_LIMIT_BURST=2."""
    return GatewayUnderTest(
        FakeUpstream(answer_all=True), options={"rate-limit-rps": "1", "rate-limit-burst": "2"}
    )


def test_burst_passes_then_429(limited: GatewayUnderTest) -> None:
    """Two calls pass with falling Remaining; the third is 429 code 8 with Retry-After."""
    first = limited.post(SHOWS)
    second = limited.post(SHOWS)
    third = limited.post(SHOWS)
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert _limit_headers(first) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "1",
    }
    assert _limit_headers(second)["X-RateLimit-Remaining"] == "0"
    assert _limit_headers(third) == {
        "X-RateLimit-Limit": "2",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "2",
    }
    assert third.header("retry-after") == "1"
    assert third.header("content-type") == "application/json"
    assert third.json() == {
        "code": 8,
        "message": "rate limit exceeded: 1 requests/s, burst 2",
        "details": [],
    }
    metrics = (limited.request("GET", "/metrics", auth=None)).body.decode()
    assert "opencue_gateway_rate_limited_requests_total 1.0" in metrics


def test_refused_calls_never_reach_cuebot(limited: GatewayUnderTest) -> None:
    """A 429 is decided at the gateway: Cuebot sees only the calls that were let through."""
    statuses = [
        (limited.post("/show.ShowInterface/FindShow", {"name": f"s{i}"})).status for i in range(4)
    ]
    assert statuses == [200, 200, 429, 429]
    assert len(limited.upstream.calls) == 2


def test_other_subject_has_its_own_bucket(limited: GatewayUnderTest) -> None:
    """Emptying alice's bucket does not affect bob."""
    alice = f"Bearer {token(sub='alice')}"
    for _ in range(3):
        limited.post(SHOWS, auth=alice)
    assert (limited.post(SHOWS, auth=alice)).status == 429
    bob = limited.post(SHOWS, auth=f"Bearer {token(sub='bob')}")
    assert bob.status == 200
    assert bob.header("X-RateLimit-Remaining") == "1"


def test_tokens_without_subject_share_the_address_bucket(
    limited: GatewayUnderTest,
) -> None:
    """Two different sub-less tokens from one address draw from one bucket."""
    now = int(EPOCH)
    one = jwt.encode({"role": "a", "exp": now + 600}, SECRET, algorithm="HS256")
    two = jwt.encode({"role": "b", "exp": now + 600}, SECRET, algorithm="HS256")
    statuses = [(limited.post(SHOWS, auth=f"Bearer {t}")).status for t in (one, two, one, two)]
    assert statuses == [200, 200, 429, 429]


def test_limit_headers_on_error_answers_too(limited: GatewayUnderTest) -> None:
    """A caller under the limit sees X-RateLimit-* on a Cuebot error and on an unknown route."""

    def gone(request: object) -> object:
        raise GatewayError(5, "gone", upstream=True)

    limited.upstream.auto[SHOWS] = gone
    upstream_error = limited.post(SHOWS)
    unknown = limited.post("/no.Such/Route")
    assert upstream_error.status == 404 and unknown.status == 404
    assert _limit_headers(upstream_error)["X-RateLimit-Remaining"] == "1"
    assert _limit_headers(unknown)["X-RateLimit-Remaining"] == "0"


def test_public_paths_are_not_rate_limited(limited: GatewayUnderTest) -> None:
    """Health checks never spend tokens nor carry the headers."""
    for _ in range(5):
        reply = limited.request("GET", "/healthz", auth=None)
        assert reply.status == 200
        assert _limit_headers(reply)["X-RateLimit-Limit"] is None
    assert (limited.post(SHOWS)).header("X-RateLimit-Remaining") == "1"


def test_disabled_limiter_sends_no_headers() -> None:
    """With RATE_LIMIT_RPS unset (0), nothing is limited and no X-RateLimit headers appear."""
    gateway = GatewayUnderTest(FakeUpstream(answer_all=True))
    for _ in range(5):
        reply = gateway.post(SHOWS)
        assert reply.status == 200
        assert _limit_headers(reply) == dict.fromkeys(HEADERS)


def test_policy_role_rate_overrides_the_default() -> None:
    """A role's rate_limit_rps in the policy file applies to that role's callers."""
    methods = [f"{rpc.service}.{rpc.method}" for rpc in load_rpcs().values()]
    policy = parse_policy(
        b'[roles.admin]\nallow = ["*"]\n'
        b'[roles.bulk]\nallow = ["*"]\nrate_limit_rps = 50\nrate_limit_burst = 60\n',
        methods,
        source="t.toml",
    )
    gateway = GatewayUnderTest(
        FakeUpstream(answer_all=True),
        options={"rate-limit-rps": "1", "rate-limit-burst": "2"},
        policy=policy,
    )
    bulk = gateway.post(SHOWS, auth=f"Bearer {token(sub='b', role='bulk')}")
    admin = gateway.post(SHOWS, auth=f"Bearer {token(sub='a', role='admin')}")
    assert bulk.status == 200
    assert bulk.header("X-RateLimit-Limit") == "60"
    assert admin.status == 200
    assert admin.header("X-RateLimit-Limit") == "2"


def test_burst_defaults_to_twice_the_rate() -> None:
    """RATE_LIMIT_BURST unset means twice RATE_LIMIT_RPS; RPS unset means off."""
    from opencue_gw.config import ConfigError, resolve_config

    env = {"JWT_SECRET": SECRET.decode()}
    assert resolve_config({}, env).rate_limit_rps == 0.0
    config = resolve_config({}, {**env, "RATE_LIMIT_RPS": "5"})
    assert (config.rate_limit_rps, config.rate_limit_burst) == (5.0, 10.0)
    with pytest.raises(ConfigError, match="RATE_LIMIT_RPS"):
        resolve_config({}, {**env, "RATE_LIMIT_RPS": "fast"})
    with pytest.raises(ConfigError, match="RATE_LIMIT_BURST"):
        resolve_config({}, {**env, "RATE_LIMIT_RPS": "1", "RATE_LIMIT_BURST": "-3"})
