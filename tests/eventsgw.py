"""
A gateway process serving the event routes and the live page in front of the simulator,
for the wire tests of C{wait}, C{watch} and C{/ui}, and for C{bench/events_bench.py}.

Run as C{python tests/eventsgw.py DIR [SPEED [INTERVAL]]}: it starts the simulator,
builds the gateway's resource tree from its parts (the RPC and resource routes, the
event routes, the page, /metrics; a policy with an C{admin}, and a C{viewer} who may
read jobs and shows only), listens on a free loopback port and writes C{port},
C{admin.token} and C{viewer.token} into DIR. It stops on SIGTERM, ending its streams
with a C{shutdown} event.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from twisted.cred.portal import Portal
from twisted.internet import reactor
from twisted.internet.task import deferLater

from opencue_gw.api import GatewayAPI
from opencue_gw.auth.bearer import GatewayRealm, JWTChecker, JWTVerifier
from opencue_gw.auth.tokens import mint_token
from opencue_gw.config import resolve_config
from opencue_gw.events import (
    EventHub,
    EventMetrics,
    EventSettings,
    EventsService,
    install_event_routes,
)
from opencue_gw.http.access import AccessLog
from opencue_gw.http.encoder import AnswerEncoder
from opencue_gw.http.guard import GatewayGuard
from opencue_gw.http.router import Router
from opencue_gw.http.wire import build_site
from opencue_gw.ops.health import PROBE_PATH, HealthRoutes, ReadinessProbe
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.rest import install_resource_routes
from opencue_gw.tap import cuebot_client_for
from opencue_gw.testing import TEST_SECRET
from opencue_gw.ui import ui_page
from opencue_gw.upstream.rpcs import load_rpcs
from opencue_sandbox import SandboxConfig, start_sandbox

POLICY = """
[roles.admin]
allow = ["*"]
[roles.viewer]
allow = ["job.*.Get*", "job.*.Find*", "show.*.Get*", "show.*.Find*"]
"""


def main(directory: str, speed: float = 0.0, interval: float = 0.5) -> None:
    """Serve until SIGTERM."""
    out = Path(directory)
    sandbox = start_sandbox(SandboxConfig(port=0, seed=7, speed=speed))
    (out / "policy.toml").write_text(POLICY)
    config = resolve_config(
        {"cuebot": sandbox.address, "policy": str(out / "policy.toml")},
        {"JWT_SECRET": TEST_SECRET.decode()},
    )
    client = cuebot_client_for(config, reactor)
    client.open()
    rpcs = load_rpcs()
    metrics = GatewayMetrics()
    in_flight = InFlight()
    api = GatewayAPI(rpcs, client, AnswerEncoder(reactor, None), policy=config.policy)
    router = Router()
    api.install(router)
    install_resource_routes(api, router)
    hub = EventHub(
        client,
        rpcs,
        reactor,
        settings=EventSettings(interval=interval),
        metrics=EventMetrics(metrics.registry),
    )
    install_event_routes(router, hub, policy=config.policy, in_flight=in_flight)
    ui_page().install(router, public=True)
    probe = ReadinessProbe(client, rpcs[PROBE_PATH], reactor)
    HealthRoutes(probe, in_flight, metrics).install(router, metrics_public=True)
    portal = Portal(GatewayRealm(), [JWTChecker(JWTVerifier(TEST_SECRET, reactor))])
    guard = GatewayGuard(
        portal, router, reactor, in_flight, AccessLog(reactor, metrics), metrics=metrics
    )
    port = reactor.listenTCP(
        0, build_site(guard, config, reactor, in_flight), interface="127.0.0.1"
    )
    EventsService(hub, reactor).startService()
    # As the gateway's service does after draining: give the last events time to leave.
    reactor.addSystemEventTrigger(
        "before", "shutdown", lambda: deferLater(reactor, 0.3, port.stopListening)
    )
    now = time.time()
    for role in ("admin", "viewer"):
        token = mint_token(TEST_SECRET, sub=f"{role}-user", role=role, now=now, ttl=3600)
        (out / f"{role}.token").write_text(token)
    (out / "port.tmp").write_text(str(port.getHost().port))
    (out / "port.tmp").rename(out / "port")
    reactor.addSystemEventTrigger("after", "shutdown", sandbox.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1], *(float(value) for value in sys.argv[2:4]))
