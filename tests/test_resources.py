# -*- test-case-name: tests.test_resources -*-
"""
The resource-style routes under /api/v1/: the route table and the answers decided by the
gateway itself (bad parameters and bodies, authentication, unknown routes), synchronously
in front of a fake upstream. What the routes do to a farm is in L{test_resources_farm},
against the simulator.
"""

from __future__ import annotations

import pytest
from opencue_proto import host_pb2

from opencue_gw.rest import ROUTES, Lookup, Param, Route
from opencue_gw.rest.spec import bind_route
from opencue_gw.testing import FakeUpstream, GatewayUnderTest, mint_test_token
from opencue_gw.upstream.rpcs import load_rpcs


@pytest.fixture
def gateway() -> GatewayUnderTest:
    """The gateway in front of a fake upstream that answers every call at once."""
    return GatewayUnderTest(FakeUpstream(answer_all=True))


def test_table_binds_and_covers_the_issue() -> None:
    """Every table entry binds to the descriptors, and the asked-for routes are all there."""
    bound = [bind_route(route, load_rpcs()) for route in ROUTES]
    declared = {(b.route.method, b.route.path) for b in bound}
    for wanted in [
        ("GET", "/api/v1/shows/{show}/groups"),
        ("GET", "/api/v1/jobs/{id}/frames"),
        ("POST", "/api/v1/jobs/{id}/eat-frames"),
        ("POST", "/api/v1/jobs"),
        ("POST", "/api/v1/hosts/{id}/reboot"),
        ("GET", "/api/v1/layers/{id}/frames"),
    ]:
        assert wanted in declared
    assert len(declared) == len(ROUTES) == 27


@pytest.mark.parametrize(
    "route",
    [
        Route("GET", "/api/v1/x", "/job.JobInterface/NoSuch", "typo in the RPC"),
        Route("GET", "/api/v1/x/{id}", "/job.JobInterface/GetJob", "unmapped placeholder"),
        Route(
            "GET",
            "/api/v1/x",
            "/job.JobInterface/GetJobs",
            "typo in a field",
            params=(Param("show", "r.showz", "?"),),
        ),
        Route("GET", "/api/v1/x", "/job.JobInterface/GetJobs", "not a list", items="jobs"),
        Route(
            "GET",
            "/api/v1/x/{s}",
            "/show.ShowInterface/GetGroups",
            "lookup of the wrong type",
            path_params={"s": Lookup("/job.JobInterface/FindJob", "name", "job", "show")},
        ),
    ],
    ids=lambda r: r.summary,
)
def test_table_mistakes_stop_start_up(route: Route) -> None:
    """A table entry that does not fit the descriptors is refused when binding."""
    with pytest.raises(ValueError):
        bind_route(route, load_rpcs())


def test_unknown_show_is_404() -> None:
    """A show that does not exist answers 404 with the error body, as the RPC does."""
    gateway = GatewayUnderTest()
    pending = gateway.send("GET", "/api/v1/shows/nope")
    call = gateway.upstream.last
    assert call.path == "/show.ShowInterface/FindShow"
    assert call.request.name == "nope"  # type: ignore[attr-defined]
    call.fail(5, "Incorrect result size: expected 1, actual 0")
    reply = pending.answer()
    assert reply.status == 404
    assert reply.json()["code"] == 5


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("bogus=1", "'bogus'"),
        ("limit=abc", "'limit'"),
        ("limit=5000", "'limit'"),
        ("page=0", "'page'"),
        ("include_finished=maybe", "'include_finished'"),
    ],
)
def test_bad_query_parameter_is_400_naming_it(
    gateway: GatewayUnderTest, query: str, named: str
) -> None:
    """Unknown parameters, bad integers and bad booleans answer 400, code 3, naming them."""
    reply = gateway.request("GET", f"/api/v1/jobs?{query}")
    assert reply.status == 400
    body = reply.json()
    assert body["code"] == 3 and named in body["message"] and body["details"] == []


def test_bad_state_name_is_400_listing_the_names(gateway: GatewayUnderTest) -> None:
    """An unknown frame state answers 400 naming the parameter and the valid states."""
    reply = gateway.request("GET", "/api/v1/jobs/job-0001/frames?state=RUNIN")
    assert reply.status == 400
    assert "'state'" in reply.json()["message"] and "RUNNING" in reply.json()["message"]


def test_same_auth_as_rpc_routes(gateway: GatewayUnderTest) -> None:
    """Without a token a resource route answers 401 with the gateway's error body."""
    reply = gateway.request("GET", "/api/v1/shows", auth=None)
    assert reply.status == 401 and reply.json()["code"] == 16
    forged = gateway.request(
        "GET", "/api/v1/shows", auth=f"Bearer {mint_test_token(secret=b'x' * 40)}"
    )
    assert forged.status == 401


def test_unknown_path_and_wrong_method(gateway: GatewayUnderTest) -> None:
    """Unknown resource paths are 404 and a POST to a GET route is 405, as JSON."""
    missing = gateway.request("GET", "/api/v1/nothing")
    assert missing.status == 404 and missing.json()["code"] == 5
    wrong = gateway.request("POST", "/api/v1/shows", b"{}")
    assert wrong.status == 405


def test_post_body_mistakes(gateway: GatewayUnderTest) -> None:
    """Bodies must be JSON objects with known members; spec is required to submit."""
    missing = gateway.request("POST", "/api/v1/jobs", {})
    assert missing.status == 400 and "'spec'" in missing.json()["message"]
    unknown = gateway.request("POST", "/api/v1/jobs", {"spec": "<x/>", "force": True})
    assert unknown.status == 400 and "'force'" in unknown.json()["message"]
    not_json = gateway.request("POST", "/api/v1/jobs", b"[1,")
    assert not_json.status == 400 and not_json.json()["code"] == 3


def test_query_parameters_fill_the_request(gateway: GatewayUnderTest) -> None:
    """Comma lists and repeats become repeated fields; booleans and enums are converted."""
    reply = gateway.request("GET", "/api/v1/jobs?show=testing,pipe&show=demo&include_finished=true")
    assert reply.status == 200
    sent = gateway.upstream.last
    assert sent.path == "/job.JobInterface/GetJobs"
    assert list(sent.request.r.shows) == ["testing", "pipe", "demo"]  # type: ignore[attr-defined]
    assert sent.request.r.include_finished is True  # type: ignore[attr-defined]
    gateway.request("GET", "/api/v1/hosts?alloc=local.general&state=UP")
    hosts = gateway.upstream.last.request
    assert list(hosts.r.allocs) == ["local.general"]  # type: ignore[attr-defined]
    assert list(hosts.r.states.state) == [host_pb2.UP]  # type: ignore[attr-defined]


def test_gateway_pages_a_list_cuebot_does_not_page() -> None:
    """A list Cuebot answers whole is sliced into pages, with nextPage until the last."""
    hosts = host_pb2.HostGetHostsResponse(
        hosts=host_pb2.HostSeq(hosts=[host_pb2.Host(id=f"h{i}", name=f"n{i}") for i in range(7)])
    )
    gateway = GatewayUnderTest(FakeUpstream({"/host.HostInterface/GetHosts": lambda r: hosts}))
    pages = [gateway.request("GET", f"/api/v1/hosts?limit=3&page={n}").json() for n in (1, 2, 3)]
    assert [[h["id"] for h in p["items"]] for p in pages] == [
        ["h0", "h1", "h2"],
        ["h3", "h4", "h5"],
        ["h6"],
    ]
    assert [p["nextPage"] for p in pages] == [2, 3, None]
    assert {(p["page"], p["limit"]) for p in pages} == {(1, 3), (2, 3), (3, 3)}


WRITE_ROUTES = [route for route in ROUTES if route.method == "POST"]


@pytest.mark.parametrize("route", WRITE_ROUTES, ids=lambda r: r.path)
def test_a_hundred_thousand_deep_body_is_a_400_on_every_write_route(
    route: Route, gateway: GatewayUnderTest
) -> None:
    """A body nested 100,000 deep is the client's error (400, code 3), never a 500."""
    path = route.path.replace("{", "").replace("}", "")  # every path value is a plain word
    body = b'{"state":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    reply = gateway.request("POST", path, body)
    assert reply.status == 400, reply.body
    assert reply.json() == {
        "code": 3,
        "message": "malformed JSON: nested too deeply",
        "details": [],
    }
    assert gateway.upstream.calls == []


def test_an_enum_typo_eats_nothing_on_either_kind_of_route(gateway: GatewayUnderTest) -> None:
    """
    EatFrames with a misspelt state is refused before Cuebot hears of it: through the Go
    gateway the unknown name was dropped, the filter emptied, and every frame eaten.
    """
    rpc = gateway.post(
        "/job.JobInterface/EatFrames",
        {"job": {"id": "j1"}, "req": {"states": {"frame_states": ["DAED"]}}},
    )
    assert rpc.status == 400
    assert "req.states.frame_states[0]" in rpc.json()["message"]
    assert "DEAD" in rpc.json()["message"]
    rest = gateway.request("POST", "/api/v1/jobs/j1/eat-frames", {"state": ["DAED"]})
    assert rest.status == 400 and rest.json()["code"] == 3
    assert "DEAD" in rest.json()["message"]
    assert gateway.upstream.calls == []
