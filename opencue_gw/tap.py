# -*- test-case-name: tests.test_tap -*-
"""
C{twistd opencue-gateway}: its options and the service tree they build.

L{makeService} only builds: it opens no socket, sends no RPC and starts no thread, so a
bad setting is reported on the terminal before twistd daemonizes, as one line naming
the setting, with exit status 2.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from twisted.application import strports
from twisted.application.service import IService
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorCore
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.threadpool import ThreadPool
from twisted.web.resource import IResource
from twisted.web.server import Site

from opencue_gw.api import GatewayAPI, IUpstream
from opencue_gw.auth import BearerCredentialFactory, GatewayRealm, JWTChecker, JWTVerifier
from opencue_gw.config import ConfigError, GatewayConfig, resolve_config
from opencue_gw.connections import ConnectionTracker
from opencue_gw.cuebot import CuebotClient
from opencue_gw.edge import Edge, InFlight
from opencue_gw.guard import BearerGuard
from opencue_gw.logs import GATEWAY_OBSERVER, set_log_level
from opencue_gw.rpcs import load_rpcs
from opencue_gw.service import CuebotService, GatewayService, ThreadPoolService

__all__ = ["GatewaySite", "Options", "build_root_resource", "build_service", "makeService"]


class Options(usage.Options):
    """
    Options of C{twistd opencue-gateway}. Unset options fall back to the environment
    variables named in their help, then to the defaults (see README).
    """

    synopsis = "[options]"
    longdesc = (
        "Serve every Cuebot RPC as POST /<package>.<Service>/<Method> with JSON bodies, "
        "compatible with OpenCue's Go REST gateway."
    )
    optFlags = [
        ["demo", None, "Run a simulated Cuebot in-process and print a ready-to-use token."],
        ["strict-json", None, "Reject request bodies with unknown fields (400)."],
        ["allow-missing-exp", None, "Accept tokens without an exp claim (old clients)."],
    ]
    optParameters = [
        ["cuebot", None, None, "Cuebot gRPC endpoint HOST:PORT [CUEBOT_ENDPOINT, localhost:8443]"],
        [
            "jwt-secret-file",
            None,
            None,
            "File holding the HMAC secret [JWT_SECRET_FILE/JWT_SECRET]",
        ],
        ["jwt-leeway", None, None, "Clock skew allowed on exp/nbf [JWT_LEEWAY, 0s]"],
        ["grpc-timeout", None, None, "Deadline of each Cuebot call, 0 = none [GRPC_TIMEOUT, 30s]"],
        [
            "grpc-max-recv-mb",
            None,
            None,
            "Largest Cuebot answer in MiB [GRPC_MAX_RECV_MSG_MB, 256]",
        ],
        ["grace-period", None, None, "Time to finish requests on shutdown [SHUTDOWN_TIMEOUT, 30s]"],
        ["log-level", None, None, "debug, info, warn, error or critical [LOG_LEVEL, info]"],
        ["codec-threads", None, None, "Threads turning large answers into JSON [2]"],
        ["demo-seed", None, None, "Seed of the demo farm [7]"],
        ["demo-speed", None, None, "Simulated seconds per second in the demo farm [10]"],
        ["demo-token-file", None, None, "Also write the demo token to this file (mode 600)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []

    def opt_port(self, description: str) -> None:
        """
        Listen on this endpoint (repeatable): a port number or a Twisted endpoint
        description such as tcp:8448:interface=127.0.0.1 [REST_PORT, 8448]
        """
        self["port"].append(description)

    opt_p = opt_port


class GatewaySite(Site):
    """A Site that never renders tracebacks and leaves access logging to the edge."""

    displayTracebacks = False
    noisy = False

    def log(self, request: Any) -> None:
        """The edge writes a richer access event; Site's own line would duplicate it."""


def build_root_resource(
    config: GatewayConfig,
    reactor: Any,
    upstream: IUpstream,
    in_flight: InFlight,
    codec_pool: ThreadPool | None,
) -> IResource:
    """
    The resource tree a request walks: edge, then the bearer guard, then the routes.

    Separate from the service tree so handler tests can put it behind StubTreq.
    """
    api = GatewayAPI(
        load_rpcs(),
        upstream,
        reactor,
        grpc_timeout=config.grpc_timeout,
        strict_json=config.strict_json,
        codec_pool=codec_pool,
    )
    verifier = JWTVerifier(
        config.jwt_secret, reactor, require_exp=config.require_exp, leeway=config.jwt_leeway
    )
    portal = Portal(GatewayRealm(api.resource_for), [JWTChecker(verifier)])
    guard = BearerGuard(portal, BearerCredentialFactory())
    return Edge(guard, reactor, in_flight)


def build_service(config: GatewayConfig, reactor: Any) -> GatewayService:
    """Wire the gateway; nothing runs until the returned service is started."""
    log = Logger(namespace="opencue_gw.tap", observer=GATEWAY_OBSERVER)
    set_log_level(config.log_level)
    for warning in config.warnings:
        log.warn("Configuration: {warning}", warning=warning)

    in_flight = InFlight()
    root = GatewayService(in_flight, reactor, config.grace_period)

    target_from = None
    if config.demo:
        from opencue_gw.demo import DemoFarmService

        demo = DemoFarmService(config.demo_seed, config.demo_speed)
        demo.setName("demo-farm")
        demo.setServiceParent(root)
        target_from = lambda: demo.address  # noqa: E731

    pool = ThreadPool(minthreads=0, maxthreads=config.codec_threads, name="opencue-gw-codec")
    threads = ThreadPoolService(pool)
    threads.setName("codec-threads")
    threads.setServiceParent(root)

    client = CuebotClient(reactor, config.cuebot, max_receive_bytes=config.max_recv_bytes)
    cuebot = CuebotService(client, target_from)
    cuebot.setName("cuebot")
    cuebot.setServiceParent(root)

    site = GatewaySite(build_root_resource(config, reactor, client, in_flight, pool))
    connections = root.connections = ConnectionTracker(site)

    for index, description in enumerate(config.listen):
        try:
            listener = strports.service(description, connections, reactor=reactor)
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"--port: cannot use {description!r}: {error}") from None
        listener.setName(f"http-{index}")
        listener.setServiceParent(root)
    return root


def makeService(
    options: Mapping[str, Any],
    reactor: IReactorCore | None = None,
    environ: Mapping[str, str] | None = None,
) -> IService:
    """Entry point for twistd: resolve the settings, then build the tree."""
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        reactor = global_reactor  # type: ignore[assignment]
    try:
        config = resolve_config(options, os.environ if environ is None else environ)
        if config.demo:
            config = _with_demo_secret(config, reactor)
        return build_service(config, reactor)
    except ConfigError as error:
        sys.stderr.write(f"opencue-gateway: {error}\n")
        raise SystemExit(2) from None


def _with_demo_secret(config: GatewayConfig, reactor: Any) -> GatewayConfig:
    from dataclasses import replace

    from opencue_gw.demo import announce_demo, demo_secret

    secret = config.jwt_secret or demo_secret()
    announce_demo(secret, reactor.seconds(), config.listen[0], config.demo_token_file)
    return replace(config, jwt_secret=secret)
