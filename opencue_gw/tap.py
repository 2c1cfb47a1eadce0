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
from collections.abc import Callable, Mapping
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
from opencue_gw.audit import AuditLog, AuditLogService
from opencue_gw.auth import (
    BearerCredentialFactory,
    GatewayRealm,
    Identity,
    JWTChecker,
    JWTVerifier,
)
from opencue_gw.coalesce import CoalescingUpstream
from opencue_gw.config import ConfigError, GatewayConfig, resolve_config
from opencue_gw.connections import ConnectionTracker
from opencue_gw.cors import DEFAULT_CORS_HEADERS, CorsPolicy
from opencue_gw.cuebot import CuebotClient, tls_credentials
from opencue_gw.docs import DocsResource, docs_public_paths, install_docs_routes
from opencue_gw.edge import Edge, InFlight
from opencue_gw.guard import BearerGuard
from opencue_gw.health import PROBE_PATH, MetricsResource, ReadinessProbe, public_health
from opencue_gw.jwks import JWKSCache
from opencue_gw.limits import HeadDeadline, body_limited_request
from opencue_gw.logs import GATEWAY_OBSERVER, set_log_level
from opencue_gw.metrics import GatewayMetrics
from opencue_gw.ratelimit import RateLimitedResource, TokenBuckets
from opencue_gw.resources import install_resource_routes
from opencue_gw.rpcs import load_rpcs
from opencue_gw.service import CuebotService, GatewayService, ThreadPoolService
from opencue_gw.workers import (
    WORKER_FD,
    AdoptedPortService,
    ParentWatchService,
    WorkerPoolService,
    shareable,
    worker_argv,
)

__all__ = [
    "GatewaySite",
    "Options",
    "build_root_resource",
    "build_service",
    "cuebot_client_for",
    "makeService",
    "shared_reads",
]


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
        ["metrics-require-token", None, "Serve /metrics only to callers with a valid token."],
        ["cuebot-tls", None, "Use TLS to Cuebot with the system's CAs [CUEBOT_TLS]"],
        ["no-coalesce", None, "Send every read to Cuebot even if an identical one is in flight."],
        ["no-public-docs", None, "Serve /openapi.json and /docs only to callers with a token."],
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
        ["max-body-bytes", None, None, "Largest request body [MAX_BODY_BYTES, 33554432]"],
        ["http-timeout", None, None, "Idle/header timeout of HTTP connections [HTTP_TIMEOUT, 60s]"],
        ["max-in-flight", None, None, "Requests in flight before shedding with 503 [2000]"],
        ["cors-origins", None, None, "Comma-separated allowed origins, * for any [CORS_ORIGINS]"],
        ["cors-headers", None, None, "Request headers browsers may send [CORS_HEADERS]"],
        ["rate-limit-rps", None, None, "Requests/s per token subject, 0 = off [RATE_LIMIT_RPS]"],
        ["rate-limit-burst", None, None, "Bucket size of the rate limit [RATE_LIMIT_BURST, 2xRPS]"],
        ["cuebot-ca", None, None, "CA bundle (PEM) to verify Cuebot's TLS [CUEBOT_CA_FILE]"],
        ["cuebot-client-cert", None, None, "Client certificate (PEM) for mutual TLS to Cuebot"],
        ["cuebot-client-key", None, None, "Client key (PEM) for mutual TLS to Cuebot"],
        ["cuebot-server-name", None, None, "TLS name to expect from Cuebot [CUEBOT_SERVER_NAME]"],
        ["read-cache-ms", None, None, "Share read answers for this long, 0 = off [READ_CACHE_MS]"],
        ["workers", None, None, "Worker processes sharing the port, one per core [WORKERS, 1]"],
        ["worker-fd", None, None, "(internal) the inherited listening socket of a worker"],
        ["jwt-public-key", None, None, "PEM key for RS/PS/ES/EdDSA tokens [JWT_PUBLIC_KEY_FILE]"],
        ["jwks-url", None, None, "Identity provider's JWKS URL for signed tokens [JWKS_URL]"],
        ["jwks-max-age", None, None, "How long fetched JWKS keys are trusted [JWKS_MAX_AGE, 10m]"],
        ["jwks-min-refresh", None, None, "Least time between JWKS fetches [JWKS_MIN_REFRESH, 30s]"],
        ["jwt-issuer", None, None, "Required iss claim of every token [JWT_ISSUER]"],
        ["jwt-audience", None, None, "Required aud claim of every token [JWT_AUDIENCE]"],
        ["policy", None, None, "TOML file of roles and the RPCs they may call [POLICY_FILE]"],
        ["audit-log", None, None, "Append a JSON line per farm-changing call here [AUDIT_LOG]"],
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

    head_timeout: float | None = None

    def __init__(self, resource: IResource, *args: Any, **kwargs: Any) -> None:
        # Every route takes JSON; Twisted's form parsing would only cost time. It builds an
        # email.message to read Content-Type on every POST (a tenth of a small call's CPU).
        kwargs.setdefault("parsePOSTFormSubmission", False)
        super().__init__(resource, *args, **kwargs)

    def log(self, request: Any) -> None:
        """The edge writes a richer access event; Site's own line would duplicate it."""

    def buildProtocol(self, addr: Any) -> Any:
        """Each connection gets a deadline for delivering its request heads."""
        protocol = super().buildProtocol(addr)
        if self.head_timeout and protocol is not None:
            channel = getattr(protocol, "_channel", protocol)
            HeadDeadline(channel, self.reactor, self.head_timeout).arm()
        return protocol


def public_resources(config: GatewayConfig, api: GatewayAPI) -> dict[bytes, IResource]:
    """
    Paths served without a token. Empty in the core gateway; health checks, metrics
    and the API description register here.
    """
    docs = DocsResource(api)
    if config.public_docs:
        return docs_public_paths(docs)
    install_docs_routes(api, docs)
    return {}


def build_root_resource(
    config: GatewayConfig,
    reactor: Any,
    upstream: IUpstream,
    in_flight: InFlight,
    codec_pool: ThreadPool | None,
    *,
    metrics: GatewayMetrics | None = None,
    probe: ReadinessProbe | None = None,
    audit: AuditLog | None = None,
) -> Edge:
    """
    The resource tree a request walks: edge, then the bearer guard, then the routes.

    Separate from the service tree so handler tests can put it behind StubTreq.
    """
    rpcs = load_rpcs()
    metrics = metrics if metrics is not None else GatewayMetrics()
    if probe is None:
        probe = ReadinessProbe(upstream, rpcs[PROBE_PATH], reactor)
    api = GatewayAPI(
        rpcs,
        upstream,
        reactor,
        grpc_timeout=config.grpc_timeout,
        strict_json=config.strict_json,
        codec_pool=codec_pool,
        policy=config.policy,
        audit=audit_log_for(config, reactor) if audit is None else audit,
    )
    install_resource_routes(api)
    verifier = verifier_for(config, reactor)
    buckets = TokenBuckets(
        reactor,
        config.rate_limit_rps,
        config.rate_limit_burst,
        rate_for=config.policy.rate_for if config.policy is not None else None,
    )

    def avatar_for(identity: Identity) -> IResource:
        return RateLimitedResource(identity, api.resource_for(identity), buckets, metrics)

    portal = Portal(GatewayRealm(avatar_for), [JWTChecker(verifier)])
    guard = BearerGuard(portal, BearerCredentialFactory())
    public = public_health(probe, in_flight, metrics, config.metrics_public)
    if not config.metrics_public:
        metrics_resource = MetricsResource(metrics)
        api.app.route("/metrics", methods=["GET"])(metrics_resource.render_GET)
    public.update(public_resources(config, api))
    cors = CorsPolicy(config.cors_origins, config.cors_headers or DEFAULT_CORS_HEADERS)
    return Edge(
        guard,
        reactor,
        in_flight,
        public,
        metrics=metrics,
        cors=cors if config.cors_origins else None,
        max_in_flight=config.max_in_flight,
    )


def cuebot_client_for(config: GatewayConfig, reactor: Any) -> CuebotClient:
    """The Cuebot client the settings describe (plaintext, TLS or mutual TLS)."""
    credentials = None
    if config.cuebot_tls:
        credentials = tls_credentials(
            config.cuebot_ca, config.cuebot_client_cert, config.cuebot_client_key
        )
    return CuebotClient(
        reactor,
        config.cuebot,
        max_receive_bytes=config.max_recv_bytes,
        credentials=credentials,
        server_name=config.cuebot_server_name,
    )


def shared_reads(
    config: GatewayConfig, client: IUpstream, reactor: Any, metrics: GatewayMetrics
) -> IUpstream:
    """The client behind read sharing and the read cache, unless both are off."""
    if not (config.coalesce_reads or config.read_cache_ms > 0):
        return client
    return CoalescingUpstream(
        client, reactor, cache_seconds=config.read_cache_ms / 1000.0, metrics=metrics
    )


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

    client = cuebot_client_for(config, reactor)
    cuebot = CuebotService(client, target_from)
    cuebot.setName("cuebot")
    cuebot.setServiceParent(root)

    probe = ReadinessProbe(client, load_rpcs()[PROBE_PATH], reactor)
    probing = probe.service()
    probing.setName("readiness-probe")
    probing.setServiceParent(root)

    audit = audit_log_for(config, reactor)
    if audit is not None:
        auditing = AuditLogService(audit, reactor)
        auditing.setName("audit-log")
        auditing.setServiceParent(root)

    metrics = GatewayMetrics()
    upstream = shared_reads(config, client, reactor, metrics)
    resource = build_root_resource(
        config, reactor, upstream, in_flight, pool, probe=probe, audit=audit, metrics=metrics
    )
    site = GatewaySite(resource, timeout=config.http_timeout)
    site.requestFactory = body_limited_request(
        config.max_body_bytes, cors=resource.cors, metrics=resource.metrics
    )
    site.head_timeout = config.http_timeout
    connections = root.connections = ConnectionTracker(site)

    if config.worker_fd is not None:
        adopted = AdoptedPortService(reactor, config.worker_fd, connections)
        adopted.setName("http-0")
        adopted.setServiceParent(root)
        watch = ParentWatchService(reactor)
        watch.setName("parent-watch")
        watch.setServiceParent(root)
        return root
    for index, description in enumerate(config.listen):
        try:
            listener = strports.service(description, connections, reactor=reactor)
        except Exception as error:
            # Includes OpenSSL's errors for an ssl: description whose key or cert is unusable.
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
        env = os.environ if environ is None else environ
        config = resolve_config(options, env)
        if config.demo:
            config = _with_demo_secret(config, reactor)
        if config.workers > 1 and config.worker_fd is None:
            return build_supervisor(config, reactor, env)
        return build_service(config, reactor)
    except ConfigError as error:
        sys.stderr.write(f"opencue-gateway: {error}\n")
        raise SystemExit(2) from None


def build_supervisor(config: GatewayConfig, reactor: Any, env: Mapping[str, str]) -> GatewayService:
    """
    The parent of C{--workers N}: the shared socket, the workers, and (with C{--demo})
    the simulated farm they all talk to. It serves no HTTP itself.
    """
    if len(config.listen) != 1:
        raise ConfigError("--workers: give exactly one --port to share")
    shareable(config.listen[0])
    set_log_level(config.log_level)
    root = GatewayService(InFlight(), reactor, config.grace_period)
    extra: Callable[[], list[str]] = lambda: []  # noqa: E731
    if config.demo:
        from opencue_gw.demo import DemoFarmService

        demo = DemoFarmService(config.demo_seed, config.demo_speed)
        demo.setName("demo-farm")
        demo.setServiceParent(root)
        extra = lambda: ["--cuebot", demo.address]  # noqa: E731
    worker_env = dict(env)
    if config.demo:
        worker_env["JWT_SECRET"] = config.jwt_secret.decode("utf-8")
    pool = WorkerPoolService(
        reactor,
        config.workers,
        config.listen[0],
        lambda index: worker_argv(sys.argv, [*extra(), "--worker-fd", str(WORKER_FD)], index),
        lambda: worker_env,
        config.grace_period,
    )
    pool.setName("workers")
    pool.setServiceParent(root)
    return root


def _with_demo_secret(config: GatewayConfig, reactor: Any) -> GatewayConfig:
    from dataclasses import replace

    from opencue_gw.demo import announce_demo, demo_secret

    secret = config.jwt_secret or demo_secret()
    announce_demo(secret, reactor.seconds(), config.listen[0], config.demo_token_file)
    return replace(config, jwt_secret=secret)


def audit_log_for(config: GatewayConfig, reactor: Any) -> AuditLog | None:
    """The audit log the configuration asks for, if any."""
    return AuditLog(config.audit_log, reactor) if config.audit_log else None


def verifier_for(config: GatewayConfig, reactor: Any) -> JWTVerifier:
    """The token verifier with every key source the configuration names."""
    jwks = None
    if config.jwks_url:
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        jwks = JWKSCache(
            config.jwks_url,
            reactor,
            HTTPClient(Agent(reactor)),
            max_age=config.jwks_max_age,
            min_interval=config.jwks_min_interval,
        )
    return JWTVerifier(
        config.jwt_secret or None,
        reactor,
        require_exp=config.require_exp,
        leeway=config.jwt_leeway,
        public_key=config.jwt_public_key,
        jwks=jwks,
        issuer=config.jwt_issuer,
        audience=config.jwt_audience,
    )
