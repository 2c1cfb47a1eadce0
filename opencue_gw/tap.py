# -*- test-case-name: tests.test_service,tests.test_config -*-
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
from twisted.python.threadpool import ThreadPool

from opencue_gw.api import GatewayAPI, IUpstream
from opencue_gw.auth.audit import AuditLog, AuditLogService
from opencue_gw.auth.bearer import (
    BearerCredentialFactory,
    GatewayRealm,
    JWTChecker,
    JWTVerifier,
)
from opencue_gw.auth.policy import Policy
from opencue_gw.config import ConfigError, GatewayConfig, resolve_config
from opencue_gw.docs import DocsRoutes
from opencue_gw.events import (
    EventHub,
    EventMetrics,
    EventSettings,
    EventsService,
    install_event_routes,
)
from opencue_gw.http.access import AccessLog
from opencue_gw.http.connections import ConnectionTracker
from opencue_gw.http.cors import DEFAULT_CORS_HEADERS, CorsPolicy
from opencue_gw.http.encoder import AnswerEncoder
from opencue_gw.http.guard import GatewayGuard
from opencue_gw.http.ratelimit import RateLimit, TokenBuckets
from opencue_gw.http.router import Router
from opencue_gw.http.wire import GatewaySite, build_site
from opencue_gw.logs import GATEWAY_OBSERVER, set_log_level
from opencue_gw.ops.health import (
    PROBE_PATH,
    HealthRoutes,
    Readiness,
    ReadinessProbe,
    ReplicaReadiness,
    report_replicas,
)
from opencue_gw.ops.inflight import InFlight
from opencue_gw.ops.metrics import GatewayMetrics
from opencue_gw.ops.service import CuebotService, GatewayService, ThreadPoolService
from opencue_gw.ops.tracing import Tracing, tracing_from_environ
from opencue_gw.ops.workers import (
    WORKER_FD,
    AdoptedPortService,
    ParentWatchService,
    WorkerPoolService,
    check_can_listen,
    listening_socket,
    shareable,
    with_backlog,
    worker_argv,
)
from opencue_gw.rest import install_resource_routes
from opencue_gw.settings import Options, refuse
from opencue_gw.shared.buckets import SharedTokenBuckets
from opencue_gw.shared.events import SharedEvents
from opencue_gw.shared.reads import SharedReads
from opencue_gw.shared.split import per_worker_limits, per_worker_rate_for
from opencue_gw.shared.stale import SharedStaleStore
from opencue_gw.shared.store import SharedStateMetrics, SharedStore, SharedStoreService
from opencue_gw.ui import ui_page
from opencue_gw.upstream.batching import BatchingUpstream
from opencue_gw.upstream.coalesce import CoalescingUpstream
from opencue_gw.upstream.cuebot import CuebotClient, tls_credentials
from opencue_gw.upstream.rpcs import Rpc, load_rpcs
from opencue_gw.upstream.stale import MemoryStaleStore, StaleIfError, StaleStore

__all__ = [
    "GatewaySite",
    "Options",
    "build_root_resource",
    "build_service",
    "cuebot_client_for",
    "makeService",
    "shared_reads",
]


def build_root_resource(
    config: GatewayConfig,
    reactor: Any,
    upstream: IUpstream,
    in_flight: InFlight,
    codec_pool: ThreadPool | None,
    *,
    metrics: GatewayMetrics | None = None,
    probe: Readiness | None = None,
    audit: AuditLog | None = None,
    shared: SharedStore | None = None,
    events: EventHub | None = None,
    tracing: Tracing | None = None,
    facilities: Mapping[str, tuple[IUpstream, EventHub | None]] | None = None,
) -> GatewayGuard:
    """
    The resource a request walks: the guard, then the router's routes.

    Everything here is built once; a request only runs what it returns. Separate from
    the service tree so handler tests can put it behind StubTreq.

    C{upstream} and C{events} are the default facility's; C{facilities} gives every
    other facility of C{config} its upstream chain and (optionally) its event source,
    and each is served under its C{/<name>/} prefix by a router of its own.
    """
    rpcs = load_rpcs()
    metrics = metrics if metrics is not None else GatewayMetrics()
    metrics.count_in_flight(lambda: in_flight.count)
    if probe is None:
        probe = ReadinessProbe(upstream, rpcs[PROBE_PATH], reactor)
    if isinstance(probe, ReplicaReadiness):
        report_replicas(metrics, probe.probes)
    elif isinstance(probe, ReadinessProbe):
        report_replicas(metrics, {config.default_facility: [(config.cuebot, probe)]})
    encoder = AnswerEncoder(reactor, codec_pool)
    audit = audit_log_for(config, reactor) if audit is None else audit
    policy = policy_for(config, config.default_facility)
    api = gateway_api(config, rpcs, upstream, encoder, policy, audit)
    router = Router(config.default_facility)
    api.install(router)
    install_resource_routes(api, router)
    HealthRoutes(probe, in_flight, metrics, shared).install(
        router, metrics_public=config.metrics_public
    )
    DocsRoutes(api).install(router, public=config.public_docs)
    if events is None:
        events = event_hub_for(config, upstream, reactor, metrics)
    install_event_routes(router, events, policy=policy, in_flight=in_flight)
    ui_page().install(router, public=config.public_docs)
    try:
        router.add_facility(config.default_facility, router)
        for spec in config.facilities[1:]:
            if facilities is None or spec.name not in facilities:
                raise ConfigError(f"facility {spec.name!r} has no upstream")
            facility_upstream, facility_events = facilities[spec.name]
            if facility_events is None:
                facility_events = event_hub_for(
                    config, facility_upstream, reactor, metrics, events.metrics
                )
            facility_policy = policy_for(config, spec.name)
            facility_api = gateway_api(
                config, rpcs, facility_upstream, encoder, facility_policy, audit
            )
            router.add_facility(
                spec.name,
                facility_router(
                    spec.name, facility_api, facility_events, in_flight, facility_policy
                ),
            )
    except ValueError as error:
        raise ConfigError(f"--facility: {error}") from None
    buckets = rate_buckets(config, reactor, shared)
    portal = Portal(GatewayRealm(), [JWTChecker(verifier_for(config, reactor))])
    cors = CorsPolicy(config.cors_origins, config.cors_headers or DEFAULT_CORS_HEADERS)
    return GatewayGuard(
        portal,
        router,
        reactor,
        in_flight,
        AccessLog(reactor, metrics),
        rate_limit=RateLimit(buckets, metrics),
        metrics=metrics,
        cors=cors if config.cors_origins else None,
        max_in_flight=config.max_in_flight,
        credentials=BearerCredentialFactory(max_token_bytes=config.max_head_bytes),
        tracing=tracing,
    )


def gateway_api(
    config: GatewayConfig,
    rpcs: Mapping[str, Rpc],
    upstream: IUpstream,
    encoder: AnswerEncoder,
    policy: Policy | None,
    audit: AuditLog | None,
) -> GatewayAPI:
    """One facility's call path: its upstream and policy, the gateway's JSON settings."""
    return GatewayAPI(
        rpcs,
        upstream,
        encoder,
        grpc_timeout=config.grpc_timeout,
        strict_json=config.strict_json,
        allow_unknown_enums=config.allow_unknown_enums,
        policy=policy,
        audit=audit,
    )


def policy_for(config: GatewayConfig, facility: str) -> Policy | None:
    """The policy deciding for calls to C{facility}, if there is a policy."""
    return config.policy.for_facility(facility) if config.policy is not None else None


def facility_router(
    name: str, api: GatewayAPI, events: EventHub, in_flight: InFlight, policy: Policy | None
) -> Router:
    """
    The routes of one facility other than the default: every RPC, the C{/api/v1}
    resources and the event routes, over that facility's upstream and event source.
    Health, metrics and the API description are the gateway's, not a facility's.
    """
    router = Router(name)
    api.install(router)
    install_resource_routes(api, router)
    install_event_routes(router, events, policy=policy, in_flight=in_flight)
    return router


def event_hub_for(
    config: GatewayConfig,
    upstream: IUpstream,
    reactor: Any,
    metrics: GatewayMetrics,
    event_metrics: EventMetrics | None = None,
    shared: SharedStore | None = None,
    facility: str | None = None,
) -> EventHub:
    """
    The live event source: one poll per watched scope, fanned out to every stream. The
    event sources of several facilities share one C{event_metrics}. With C{shared}
    (C{--redis}), one instance polls each scope for every instance, in C{facility}'s
    key space.
    """
    settings = EventSettings(
        interval=config.events_interval,
        heartbeat=config.events_heartbeat,
        history=config.events_history,
        max_subscribers=config.events_max_subscribers,
        max_per_caller=config.events_max_per_caller,
        max_buffer_bytes=config.events_max_buffer,
        poll_timeout=config.events_poll_timeout,
        max_wait=config.events_max_wait,
    )
    if event_metrics is None:
        event_metrics = EventMetrics(metrics.registry)
    sharing = None if shared is None else SharedEvents(shared, reactor, redis_prefix(facility))
    return EventHub(
        upstream,
        load_rpcs(),
        reactor,
        settings=settings,
        metrics=event_metrics,
        shared=sharing,
    )


def rate_buckets(
    config: GatewayConfig, reactor: Any, shared: SharedStore | None
) -> TokenBuckets | SharedTokenBuckets:
    """
    One bucket per caller in Redis with C{--redis} (this process's share of the limits
    while Redis is away); else this process's share among C{--workers}.
    """
    rate_for = config.policy.rate_for if config.policy is not None else None
    if shared is not None:
        local = TokenBuckets(
            reactor, config.rate_limit_rps, config.rate_limit_burst, rate_for=rate_for
        )
        return SharedTokenBuckets(shared, local, workers=config.workers)
    rate, burst = per_worker_limits(config.rate_limit_rps, config.rate_limit_burst, config.workers)
    return TokenBuckets(
        reactor, rate, burst, rate_for=per_worker_rate_for(rate_for, config.workers)
    )


def shared_store_for(
    config: GatewayConfig, reactor: Any, metrics: GatewayMetrics
) -> SharedStore | None:
    """The Redis of C{--redis}, its series on the gateway's registry; None without it."""
    if config.redis is None:
        return None
    return SharedStore(
        config.redis,
        reactor,
        timeout=config.redis_timeout,
        metrics=SharedStateMetrics(metrics.registry),
    )


def cuebot_client_for(
    config: GatewayConfig, reactor: Any, target: str | None = None
) -> CuebotClient:
    """
    The Cuebot client the settings describe (plaintext, TLS or mutual TLS), to
    C{target}'s replicas (default: C{--cuebot}'s).
    """
    credentials = None
    if config.cuebot_tls:
        credentials = tls_credentials(
            config.cuebot_ca, config.cuebot_client_cert, config.cuebot_client_key
        )
    return CuebotClient(
        reactor,
        config.cuebot if target is None else target,
        max_receive_bytes=config.max_recv_bytes,
        credentials=credentials,
        server_name=config.cuebot_server_name,
    )


def batched_reads(
    config: GatewayConfig, client: IUpstream, reactor: Any, metrics: GatewayMetrics
) -> IUpstream:
    """
    The client behind by-id read batching, unless C{--no-batch}. Innermost: identical
    reads are shared first, and reads that differ only in their ids are batched below.
    """
    if not config.batch_reads:
        return client
    return BatchingUpstream(client, reactor, metrics=metrics)


def redis_prefix(facility: str | None) -> str:
    """
    The key space of one facility's shared state in Redis: the default facility keeps
    the plain prefix, every other one its own, so their reads never meet.
    """
    return "ocgw:" if facility is None else f"ocgw:f:{facility}:"


def shared_reads(
    config: GatewayConfig,
    client: IUpstream,
    reactor: Any,
    metrics: GatewayMetrics,
    shared: SharedStore | None = None,
    facility: str | None = None,
) -> IUpstream:
    """
    The client behind read sharing and the read cache, unless both are off. With
    C{--redis}, the cache and reads in flight are shared across instances too, under
    the sharing within this process (which also answers while Redis is away).
    """
    local = client
    if config.coalesce_reads or config.read_cache_ms > 0:
        local = CoalescingUpstream(
            client, reactor, cache_seconds=config.read_cache_ms / 1000.0, metrics=metrics
        )
    if shared is None:
        return local
    across = SharedReads(
        client,
        shared,
        reactor,
        cache_seconds=config.read_cache_ms / 1000.0,
        fallback=local,
        prefix=redis_prefix(facility),
    )
    return CoalescingUpstream(across, reactor, metrics=metrics)


def stale_if_error(
    config: GatewayConfig,
    upstream: IUpstream,
    reactor: Any,
    metrics: GatewayMetrics,
    shared: SharedStore | None = None,
    facility: str | None = None,
) -> IUpstream:
    """
    C{upstream} behind C{--stale-if-error}, if set. Outermost, over read sharing: a
    caller's deadline expiring in the sharing layer is covered too, and a stale answer
    reaches the API with its age.
    """
    max_age = config.stale_if_error
    if max_age <= 0:
        return upstream
    store: StaleStore = MemoryStaleStore(config.stale_max_bytes)
    if shared is not None:
        store = SharedStaleStore(
            shared,
            store,
            max_age=max_age,
            max_bytes=config.stale_max_bytes,
            prefix=redis_prefix(facility),
        )
    return StaleIfError(
        upstream,
        reactor,
        max_age=max_age,
        on_stale=lambda rpc, age: metrics.stale_reads.inc(),
        store=store,
    )


def upstream_chain(
    config: GatewayConfig,
    client: IUpstream,
    reactor: Any,
    metrics: GatewayMetrics,
    shared: SharedStore | None = None,
    facility: str | None = None,
) -> IUpstream:
    """
    What the routes call: stale answers over shared reads over batched reads over the
    Cuebot client, each layer present only when its setting asks for it. C{facility}
    names a facility other than the default, for its own key space in Redis.
    """
    batched = batched_reads(config, client, reactor, metrics)
    reads = shared_reads(config, batched, reactor, metrics, shared, facility)
    return stale_if_error(config, reads, reactor, metrics, shared, facility)


def build_service(config: GatewayConfig, reactor: Any) -> GatewayService:
    """Wire the gateway; nothing runs until the returned service is started."""
    log = Logger(namespace="opencue_gw.tap", observer=GATEWAY_OBSERVER)
    set_log_level(config.log_level)
    for warning in config.warnings:
        log.warn("Configuration: {warning}", warning=warning)

    in_flight = InFlight()
    root = GatewayService(in_flight, reactor, config.grace_period)
    tracing, exporting = tracing_from_environ(os.environ, reactor)
    if exporting is not None:
        # First in, so stopped last: the spans of the requests drained at stop are sent.
        exporting.setName("tracing")
        exporting.setServiceParent(root)

    target_from = None
    if config.demo:
        from opencue_gw.ops.demo import DemoFarmService

        demo = DemoFarmService(config.demo_seed, config.demo_speed)
        demo.setName("demo-farm")
        demo.setServiceParent(root)
        target_from = lambda: demo.address  # noqa: E731

    pool = ThreadPool(minthreads=0, maxthreads=config.codec_threads, name="opencue-gw-codec")
    threads = ThreadPoolService(pool)
    threads.setName("codec-threads")
    threads.setServiceParent(root)

    clients: dict[str, CuebotClient] = {}
    for index, spec in enumerate(config.facilities):
        clients[spec.name] = facility_client = cuebot_client_for(config, reactor, spec.target)
        cuebot = CuebotService(facility_client, target_from if index == 0 else None)
        cuebot.setName("cuebot" if index == 0 else f"cuebot-{spec.name}")
        cuebot.setServiceParent(root)
    client = clients[config.default_facility]
    probe = readiness_for(config, reactor, clients, root)

    audit = audit_log_for(config, reactor)
    if audit is not None:
        auditing = AuditLogService(audit, reactor)
        auditing.setName("audit-log")
        auditing.setServiceParent(root)

    metrics = GatewayMetrics()
    # Before the event sources, so that it stops after them (they give their leases up).
    shared = shared_store_for(config, reactor, metrics)
    if shared is not None:
        sharing = SharedStoreService(shared)
        sharing.setName("redis")
        sharing.setServiceParent(root)
    # The event source polls Cuebot itself, as the readiness probe does: on the plain
    # client, so stale answers can never hide an outage from a stream.
    events = event_hub_for(config, client, reactor, metrics, shared=shared)
    streams = EventsService(events, reactor)
    streams.setName("events")
    streams.setServiceParent(root)
    facility_events = {}
    for spec in config.facilities[1:]:
        hub = event_hub_for(
            config, clients[spec.name], reactor, metrics, events.metrics, shared, spec.name
        )
        facility_streams = EventsService(hub, reactor)
        facility_streams.setName(f"events-{spec.name}")
        facility_streams.setServiceParent(root)
        facility_events[spec.name] = hub
    upstream = upstream_chain(config, client, reactor, metrics, shared)
    facilities: dict[str, tuple[IUpstream, EventHub | None]] = {
        spec.name: (
            upstream_chain(config, clients[spec.name], reactor, metrics, shared, spec.name),
            facility_events[spec.name],
        )
        for spec in config.facilities[1:]
    }
    resource = build_root_resource(
        config,
        reactor,
        upstream,
        in_flight,
        pool,
        probe=probe,
        audit=audit,
        metrics=metrics,
        events=events,
        shared=shared,
        tracing=tracing,
        facilities=facilities,
    )
    site = build_site(resource, config, reactor, in_flight)
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
            listener = strports.service(with_backlog(description), connections, reactor=reactor)
        except Exception as error:
            # Includes OpenSSL's errors for an ssl: description whose key or cert is unusable.
            raise ConfigError(f"--port: cannot use {description!r}: {error}") from None
        listener.setName(f"http-{index}")
        listener.setServiceParent(root)
    return root


def readiness_for(
    config: GatewayConfig, reactor: Any, clients: Mapping[str, CuebotClient], root: Any
) -> Readiness:
    """
    The readiness probes, their timers added to C{root}. One Cuebot: one probe on the
    calls' own client. Several replicas or facilities: a probe per replica, on a client
    (a channel) of its own where a facility has several replicas, so each is judged
    apart from the others (L{ReplicaReadiness}).
    """
    rpc: Rpc = load_rpcs()[PROBE_PATH]
    default = config.facilities[0]
    if len(config.facilities) == 1 and len(default.replicas) == 1:
        probe = ReadinessProbe(clients[default.name], rpc, reactor)
        probing = probe.service()
        probing.setName("readiness-probe")
        probing.setServiceParent(root)
        return probe
    probes: dict[str, list[tuple[str, ReadinessProbe]]] = {}
    for spec in config.facilities:
        probes[spec.name] = []
        for index, replica in enumerate(spec.replicas):
            client = clients[spec.name]
            if len(spec.replicas) > 1:
                client = cuebot_client_for(config, reactor, replica)
                opening = CuebotService(client)
                opening.setName(f"cuebot-{spec.name}-probe-{index}")
                opening.setServiceParent(root)
            probe = ReadinessProbe(client, rpc, reactor)
            probing = probe.service()
            probing.setName(f"readiness-probe-{spec.name}-{index}")
            probing.setServiceParent(root)
            probes[spec.name].append((replica, probe))
    return ReplicaReadiness(config.default_facility, probes)


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
            config = _with_demo_secret(config)
        service: IService
        if config.workers > 1 and config.worker_fd is None:
            service = build_supervisor(config, reactor, env)
            listening_socket(config.listen[0]).close()
        else:
            service = build_service(config, reactor)
            if config.worker_fd is None:
                for index, description in enumerate(config.listen):
                    listener = service.getServiceNamed(f"http-{index}")
                    check_can_listen(getattr(listener, "endpoint", None), description)
        # Only once every setting, the ports included, is known to work: a token printed
        # for a demo that then fails to start would only mislead.
        if config.demo:
            _announce_demo(config, reactor)
        return service
    except ConfigError as error:
        refuse(error)


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
        from opencue_gw.ops.demo import DemoFarmService

        demo = DemoFarmService(config.demo_seed, config.demo_speed)
        demo.setName("demo-farm")
        demo.setServiceParent(root)
        extra = lambda: ["--cuebot", demo.address]  # noqa: E731
    worker_env = dict(env)
    if config.demo:
        worker_env["JWT_SECRET"] = config.jwt_secret.decode("utf-8")
    # Each worker takes its share of the rate limits (without Redis, or while it is away).
    worker_env["WORKERS"] = str(config.workers)
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


def _with_demo_secret(config: GatewayConfig) -> GatewayConfig:
    from dataclasses import replace

    from opencue_gw.ops.demo import demo_secret

    return replace(config, jwt_secret=config.jwt_secret or demo_secret())


def _announce_demo(config: GatewayConfig, reactor: Any) -> None:
    from opencue_gw.ops.demo import announce_demo

    announce_demo(config.jwt_secret, reactor.seconds(), config.listen[0], config.demo_token_file)


def audit_log_for(config: GatewayConfig, reactor: Any) -> AuditLog | None:
    """The audit log the configuration asks for, if any."""
    return AuditLog(config.audit_log, reactor) if config.audit_log else None


def verifier_for(config: GatewayConfig, reactor: Any) -> JWTVerifier:
    """The token verifier with every key source the configuration names."""
    jwks = None
    if config.jwks_url:
        from treq.client import HTTPClient
        from twisted.web.client import Agent

        from opencue_gw.auth.jwks import JWKSCache

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
