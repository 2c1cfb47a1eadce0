"""
Facilities handled synchronously: settings, the path prefix, each facility's own
upstream, policy by facility, the audit and access logs, metrics and readiness per
replica. A L{FakeUpstream} stands in for each facility's Cuebot: the network is not the
behaviour here (tests/test_replicas.py has the real wire).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from opencue_proto import job_pb2, show_pb2
from treq.testing import StubTreq
from twisted.logger import globalLogPublisher

from opencue_gw.auth.audit import AuditLog
from opencue_gw.config import ConfigError, resolve_config
from opencue_gw.facilities import FacilitySpec, load_facilities_file
from opencue_gw.http.router import Router
from opencue_gw.ops.health import PROBE_PATH, ReadinessProbe, ReplicaReadiness
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.settings import Options
from opencue_gw.tap import build_root_resource, upstream_chain
from opencue_gw.testing import (
    TEST_SECRET,
    FakeReactor,
    FakeUpstream,
    GatewayUnderTest,
    HTTPReply,
    InlineThreadPool,
    PendingRequest,
    mint_test_token,
)
from opencue_gw.upstream.cuebot import grpc_targets
from opencue_gw.upstream.rpcs import load_rpcs

SHOWS = "/show.ShowInterface/GetShows"
JOBS = "/job.JobInterface/GetJobs"
ENV = {"JWT_SECRET": TEST_SECRET.decode()}
POLICY = b"""
[roles.cloud-only]
allow = ["*"]
facilities = ["cloud"]

[roles.everywhere]
allow = ["*.Get*"]
"""


def _resolve(options: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Any:
    return resolve_config(options, {**ENV, **(env or {})})


class FacilityGateway:
    """
    The whole HTTP tree with a default facility and C{names}, each in front of its own
    L{FakeUpstream} (answering everything with an empty answer), behind StubTreq.
    """

    def __init__(self, *names: str, options: Mapping[str, Any] | None = None) -> None:
        self.clock = FakeReactor()
        given = {
            "cuebot": "cuebot-a.invalid:8443,cuebot-b.invalid:8443",
            "facility": [f"{name}=cuebot-{name}.invalid:8443" for name in names],
            **(options or {}),
        }
        self.config = _resolve(given)
        self.metrics = GatewayMetrics()
        self.upstreams = {
            spec.name: FakeUpstream(answer_all=True, clock=self.clock)
            for spec in self.config.facilities
        }
        chains = {
            name: upstream_chain(self.config, upstream, self.clock, self.metrics)
            for name, upstream in self.upstreams.items()
        }
        default = self.config.default_facility
        audit_path = self.config.audit_log
        self.audit = AuditLog(audit_path, self.clock) if audit_path else None
        self.resource = build_root_resource(
            self.config,
            self.clock,
            chains[default],
            InFlight(),
            InlineThreadPool(),
            metrics=self.metrics,
            audit=self.audit,
            facilities={name: (chain, None) for name, chain in chains.items() if name != default},
        )
        self.stub: Any = StubTreq(self.resource)

    def send(
        self, method: str, path: str, body: Any = None, role: str | None = "admin"
    ) -> PendingRequest:
        headers = {}
        if role is not None:
            headers["Authorization"] = "Bearer " + mint_test_token(role=role)
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        response = self.stub.request(method, "http://gw.test" + path, data=data, headers=headers)
        pending = PendingRequest(self.stub, response)
        self.stub.flush()
        return pending

    def post(self, path: str, body: Any = None, role: str | None = "admin") -> HTTPReply:
        return self.send("POST", path, body if body is not None else b"{}", role).answer()

    def paths(self) -> dict[str, list[str]]:
        return {name: upstream.paths for name, upstream in self.upstreams.items()}


@pytest.fixture
def log_events() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted while the test runs."""
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


# Settings.


def test_cuebot_takes_a_replica_list_and_one_replica_reads_as_before() -> None:
    """--cuebot keeps one HOST:PORT unchanged and takes several, spaces dropped."""
    assert _resolve({}).cuebot == "localhost:8443"
    config = _resolve({"cuebot": " a:1 , 10.0.0.2:2 "})
    assert config.cuebot == "a:1,10.0.0.2:2"
    assert config.facilities == (FacilitySpec("default", ("a:1", "10.0.0.2:2")),)
    for bad in ("a:1,,b:2", "a:1,a:1", "a:1,b"):
        with pytest.raises(ConfigError, match="--cuebot"):
            _resolve({"cuebot": bad})


def test_facilities_from_the_option_the_variable_and_a_file(tmp_path: Path) -> None:
    """--facility (repeatable), CUEBOT_FACILITIES and --facilities-file all add facilities."""
    options = Options()
    options.parseOptions(["--facility", "local=a:1,b:2", "--facility", "cloud=c:3"])
    config = _resolve(options)
    assert [(f.name, f.replicas) for f in config.facilities] == [
        ("default", ("localhost:8443",)),
        ("local", ("a:1", "b:2")),
        ("cloud", ("c:3",)),
    ]
    from_env = _resolve({}, {"CUEBOT_FACILITIES": "local=a:1,b:2; cloud=c:3"})
    assert from_env.facilities == config.facilities
    path = tmp_path / "facilities.toml"
    path.write_text(
        '[facilities.local]\ncuebots = ["a:1", "b:2"]\n[facilities.cloud]\ncuebots = ["c:3"]\n'
    )
    assert _resolve({"facilities-file": str(path)}).facilities == config.facilities
    assert load_facilities_file(str(path)) == (("local", "a:1,b:2"), ("cloud", "c:3"))


def test_the_default_facility_may_be_named_and_given_as_a_facility() -> None:
    """--default-facility names --cuebot's facility, or picks one given by --facility."""
    named = _resolve({"cuebot": "a:1", "default-facility": "local", "facility": ["cloud=c:3"]})
    assert [f.name for f in named.facilities] == ["local", "cloud"]
    picked = _resolve({"default-facility": "cloud", "facility": ["local=a:1", "cloud=c:3"]})
    assert [(f.name, f.target) for f in picked.facilities] == [("cloud", "c:3"), ("local", "a:1")]
    assert picked.default_facility == "cloud"


@pytest.mark.parametrize(
    ("options", "env", "fault"),
    [
        ({"facility": ["local=a:1", "local=b:2"]}, {}, "given twice"),
        ({"cuebot": "a:1", "facility": ["default=b:2"]}, {}, "give its Cuebots once"),
        ({"facility": ["api=a:1"]}, {}, "gateway's own paths"),
        ({"facility": ["no/slash=a:1"]}, {}, "letters, digits"),
        ({"facility": ["local"]}, {}, "NAME=HOST:PORT"),
        ({}, {"CUEBOT_FACILITIES": "local=a"}, "HOST:PORT"),
        ({"default-facility": "metrics"}, {}, "gateway's own paths"),
    ],
)
def test_bad_facilities_are_refused_naming_the_setting(
    options: dict[str, Any], env: dict[str, str], fault: str
) -> None:
    """Each mistake stops the start with one line naming the setting."""
    with pytest.raises(ConfigError, match=fault):
        _resolve(options, env)


def test_a_bad_facilities_file_names_the_file_and_key(tmp_path: Path) -> None:
    """Unknown keys, missing cuebots and bad addresses in the file are refused."""
    path = tmp_path / "f.toml"
    for text, fault in (
        ('[facilities.local]\ncuebot = ["a:1"]\n', "unknown key facilities.local.cuebot"),
        ("[facilities.local]\ncuebots = []\n", "facilities.local.cuebots"),
        ('[facilities.local]\ncuebots = ["a"]\n', "facilities.local: expected HOST:PORT"),
        ("[other]\nx = 1\n", "unknown key other"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match="--facilities-file") as refused:
            _resolve({"facilities-file": str(path)})
        assert fault in str(refused.value)


def test_grpc_targets_group_literal_addresses_and_keep_names_apart() -> None:
    """Literal addresses share a round_robin channel per family; each DNS name has its own."""
    assert grpc_targets("cuebot:8443") == ["cuebot:8443"]
    assert grpc_targets("10.0.0.1:8443,10.0.0.2:8443") == ["ipv4:10.0.0.1:8443,10.0.0.2:8443"]
    assert grpc_targets("a:1,10.0.0.1:2,[::1]:3,b:4,10.0.0.2:5") == [
        "ipv4:10.0.0.1:2,10.0.0.2:5",
        "ipv6:[::1]:3",
        "a:1",
        "b:4",
    ]


# Routing by prefix.


def test_no_prefix_answers_exactly_as_a_gateway_without_facilities() -> None:
    """Without a prefix: the default facility's Cuebot, and the same bytes as before."""
    plain = GatewayUnderTest(FakeUpstream(answer_all=True))
    gateway = FacilityGateway("cloud")
    for path, body in ((SHOWS, b"{}"), ("/nowhere", b"{}"), (SHOWS, b"{bad")):
        before = plain.post(path, body)
        after = gateway.post(path, body)
        assert (after.status, after.body) == (before.status, before.body)
        drop = {b"X-Request-Id", b"Date"}
        assert {k: v for k, v in after.headers.getAllRawHeaders() if k not in drop} == {
            k: v for k, v in before.headers.getAllRawHeaders() if k not in drop
        }
    assert gateway.paths() == {"default": [SHOWS], "cloud": []}


def test_each_prefix_reaches_its_own_facility() -> None:
    """/cloud/... goes to cloud's Cuebot, /default/... to the default's, CueWeb-style."""
    gateway = FacilityGateway("cloud", "local")
    gateway.upstreams["cloud"].auto[SHOWS] = lambda _: show_pb2.ShowGetShowsResponse(
        shows=show_pb2.ShowSeq(shows=[show_pb2.Show(name="cloud-show")])
    )
    reply = gateway.post("/cloud" + SHOWS)
    assert reply.status == 200 and reply.json()["shows"]["shows"][0]["name"] == "cloud-show"
    cueweb = gateway.post("/local" + JOBS, {"r": {"include_finished": True, "shows": ["x"]}})
    assert cueweb.status == 200
    (call,) = gateway.upstreams["local"].calls
    assert call.request == job_pb2.JobGetJobsRequest(
        r=job_pb2.JobSearchCriteria(include_finished=True, shows=["x"])
    )
    assert gateway.post("/default" + SHOWS).status == 200
    assert gateway.paths() == {"default": [SHOWS], "cloud": [SHOWS], "local": [JOBS]}


def test_resource_routes_under_a_prefix_use_that_facility() -> None:
    """/cloud/api/v1/shows is the resource route, on cloud's Cuebot."""
    gateway = FacilityGateway("cloud")
    reply = gateway.send("GET", "/cloud/api/v1/shows").answer()
    assert reply.status == 200, reply.body
    assert gateway.paths() == {"default": [], "cloud": [SHOWS]}


def test_an_unknown_prefix_is_a_json_404_behind_the_token() -> None:
    """An RPC or /api/ path under an unknown prefix: 404 naming it; 401 without a token."""
    gateway = FacilityGateway("cloud")
    reply = gateway.post("/nowhere" + SHOWS)
    assert reply.status == 404
    assert reply.json() == {
        "code": 5,
        "message": "no facility named 'nowhere' (facilities: cloud, default)",
        "details": [],
    }
    assert gateway.send("GET", "/nowhere/api/v1/shows").answer().status == 404
    assert gateway.post("/nowhere" + SHOWS, role=None).status == 401
    assert gateway.paths() == {"default": [], "cloud": []}


def test_a_facility_may_not_hide_the_gateways_own_paths() -> None:
    """The router refuses a facility named like the first segment of one of its routes."""
    router = Router()
    router.add("/status/<name>", lambda request, name: b"", methods=["GET"])
    with pytest.raises(ValueError, match="status"):
        router.add_facility("status", Router("status"))


def test_events_are_polled_on_the_facilitys_own_cuebot() -> None:
    """A stream under /cloud/ polls cloud's Cuebot, never the default's."""
    gateway = FacilityGateway("cloud")
    gateway.send("GET", "/cloud/api/v1/events?show=testing")
    gateway.clock.advance(5)
    assert gateway.upstreams["cloud"].calls and not gateway.upstreams["default"].calls


# Policy, logs and metrics by facility.


def test_a_role_limited_to_a_facility_is_refused_elsewhere(tmp_path: Path) -> None:
    """facilities = ["cloud"]: allowed under /cloud/, 403 without a prefix; audited so."""
    policy = tmp_path / "policy.toml"
    policy.write_bytes(POLICY)
    audit = tmp_path / "audit.log"
    gateway = FacilityGateway("cloud", options={"policy": str(policy), "audit-log": str(audit)})
    assert gateway.post("/cloud" + SHOWS, role="cloud-only").status == 200
    refused = gateway.post(SHOWS, role="cloud-only")
    assert refused.status == 403
    assert refused.json()["message"] == (
        "permission denied: role cloud-only may not use facility 'default' "
        "(show.ShowInterface/GetShows)"
    )
    assert gateway.post("/default" + SHOWS, role="cloud-only").status == 403
    assert gateway.post(SHOWS, role="everywhere").status == 200
    assert gateway.post("/cloud/show.ShowInterface/CreateShow", role="cloud-only").status == 200
    assert gateway.audit is not None
    gateway.audit.close()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(e["facility"], e["method"], e["outcome"]) for e in lines] == [
        ("default", "show.ShowInterface/GetShows", "PERMISSION_DENIED"),
        ("default", "show.ShowInterface/GetShows", "PERMISSION_DENIED"),
        ("cloud", "show.ShowInterface/CreateShow", "OK"),
    ]
    assert gateway.paths() == {
        "default": [SHOWS],
        "cloud": [SHOWS, "/show.ShowInterface/CreateShow"],
    }


def test_a_policy_naming_an_unknown_facility_is_refused(tmp_path: Path) -> None:
    """A typo in a role's facilities stops the start."""
    policy = tmp_path / "policy.toml"
    policy.write_bytes(POLICY.replace(b'["cloud"]', b'["clud"]'))
    with pytest.raises(ConfigError, match="'clud' is not a facility the gateway serves"):
        _resolve({"policy": str(policy), "facility": ["cloud=c:1"]})


def test_access_log_and_metrics_carry_the_facility(log_events: list[dict[str, Any]]) -> None:
    """The access event names the facility; /metrics counts requests by facility."""
    gateway = FacilityGateway("cloud")
    gateway.post("/cloud" + SHOWS)
    gateway.post(SHOWS)
    gateway.post("/nowhere" + SHOWS)
    access = [e for e in log_events if "status" in e and "request_id" in e]
    assert [(e["path"], e["facility"]) for e in access] == [
        ("/cloud" + SHOWS, "cloud"),
        (SHOWS, "default"),
        ("/nowhere" + SHOWS, None),
    ]
    text = gateway.send("GET", "/metrics").answer().body.decode()
    assert 'opencue_gateway_facility_requests_total{facility="cloud",status="200"} 1.0' in text
    assert 'opencue_gateway_facility_requests_total{facility="default",status="200"} 1.0' in text
    assert 'opencue_gateway_facility_requests_total{facility="",status="404"} 1.0' in text


# Readiness per replica.


def _replica_probes(clock: FakeReactor) -> tuple[ReplicaReadiness, dict[str, FakeUpstream]]:
    rpc = load_rpcs()[PROBE_PATH]
    fakes = {name: FakeUpstream(clock=clock) for name in ("a:1", "b:2", "c:3")}
    probes = {
        "default": [(r, ReadinessProbe(fakes[r], rpc, clock)) for r in ("a:1", "b:2")],
        "cloud": [("c:3", ReadinessProbe(fakes["c:3"], rpc, clock))],
    }
    return ReplicaReadiness("default", probes), fakes


def test_readyz_is_ready_while_one_default_replica_answers() -> None:
    """One of two replicas answering is ready; /readyz and the gauge say which."""
    clock = FakeReactor()
    readiness, fakes = _replica_probes(clock)
    gateway = GatewayUnderTest(FakeUpstream(), clock=clock)
    metrics = GatewayMetrics()
    resource = build_root_resource(
        gateway.config,
        clock,
        gateway.upstream,
        InFlight(),
        None,
        metrics=metrics,
        probe=readiness,
    )
    stub = StubTreq(resource)

    def readyz() -> HTTPReply:
        pending = PendingRequest(stub, stub.get("http://gw.test/readyz"))
        stub.flush()
        return pending.answer()

    assert readyz().status == 503
    for each in readiness.probes.values():
        for _, probe in each:
            probe.probe()
    fakes["a:1"].last.fail(14, "connection refused")
    fakes["b:2"].last.succeed()
    fakes["c:3"].last.fail(14, "connection refused")
    reply = readyz()
    assert reply.status == 200
    body = reply.json()
    assert body["cuebot"] == "1 of 2 Cuebot replicas of facility 'default' answer"
    assert body["facilities"]["default"]["ready"] is True
    assert body["facilities"]["default"]["replicas"]["a:1"] == {
        "ready": False,
        "cuebot": "Cuebot did not answer (UNAVAILABLE)",
    }
    assert body["facilities"]["cloud"]["ready"] is False
    text = metrics.exposition().decode()
    up = 'opencue_gateway_cuebot_replica_up{facility="default",replica="b:2"} 1.0'
    down = 'opencue_gateway_cuebot_replica_up{facility="default",replica="a:1"} 0.0'
    assert up in text and down in text
    readiness.probes["default"][1][1].probe()
    fakes["b:2"].last.fail(14, "connection refused")
    grace = readyz()
    assert grace.status == 200
    assert grace.json()["cuebot"] == (
        "no Cuebot replica of facility 'default' answered its last probe; one answered "
        "within the last 15s"
    )
    assert grace.json()["facilities"]["default"]["replicas"]["b:2"]["ready"] is False
    assert up.replace("1.0", "0.0") in metrics.exposition().decode()
    clock.advance(20)
    stale = readyz()
    assert stale.status == 503
    assert stale.json()["message"].startswith("no Cuebot replica of facility 'default' answers")


def test_each_facility_has_its_own_key_space_in_redis() -> None:
    """Shared reads of two facilities never meet: the default keeps the plain prefix."""
    from opencue_gw.tap import redis_prefix

    assert redis_prefix(None) == "ocgw:"
    assert redis_prefix("cloud") == "ocgw:f:cloud:"
    assert redis_prefix("cloud") != redis_prefix("local")
