"""The gRPC server, the ticker thread that keeps the farm up with the clock, and
``start_sandbox``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from opencue_proto import (
    comment_pb2_grpc,
    cue_pb2_grpc,
    department_pb2_grpc,
    depend_pb2_grpc,
    facility_pb2_grpc,
    filter_pb2_grpc,
    host_pb2_grpc,
    job_pb2_grpc,
    limit_pb2_grpc,
    renderPartition_pb2_grpc,
    service_pb2_grpc,
    show_pb2_grpc,
    subscription_pb2_grpc,
    task_pb2_grpc,
)

from opencue_sandbox.clock import Clock, WallClock
from opencue_sandbox.config import SandboxConfig
from opencue_sandbox.farm import Farm
from opencue_sandbox.seed import build_demo
from opencue_sandbox.servicers.cue import CueServant
from opencue_sandbox.servicers.facility import AllocationServant, FacilityServant
from opencue_sandbox.servicers.filter import ActionServant, FilterServant, MatcherServant
from opencue_sandbox.servicers.frame import FrameServant
from opencue_sandbox.servicers.group import GroupServant
from opencue_sandbox.servicers.host import DeedServant, HostServant, OwnerServant, ProcServant
from opencue_sandbox.servicers.job import JobServant
from opencue_sandbox.servicers.layer import LayerServant
from opencue_sandbox.servicers.misc import (
    CommentServant,
    DepartmentServant,
    DependServant,
    LimitServant,
    SubscriptionServant,
    TaskServant,
)
from opencue_sandbox.servicers.partition import RenderPartitionServant
from opencue_sandbox.servicers.service import ServiceOverrideServant, ServiceServant
from opencue_sandbox.servicers.show import ShowServant

log = logging.getLogger("opencue_sandbox")

TICK_SECONDS = 0.25
MAX_MESSAGE_BYTES = 100 * 1024 * 1024  # Cuebot's grpc.max_message_bytes

# (registration function, servant class). Monitoring is left out on purpose: Cuebot
# does not add it either, so its RPCs answer UNIMPLEMENTED "Method not found".
SERVICES: tuple[tuple[Any, type], ...] = (
    (cue_pb2_grpc.add_CueInterfaceServicer_to_server, CueServant),
    (show_pb2_grpc.add_ShowInterfaceServicer_to_server, ShowServant),
    (job_pb2_grpc.add_JobInterfaceServicer_to_server, JobServant),
    (job_pb2_grpc.add_LayerInterfaceServicer_to_server, LayerServant),
    (job_pb2_grpc.add_FrameInterfaceServicer_to_server, FrameServant),
    (job_pb2_grpc.add_GroupInterfaceServicer_to_server, GroupServant),
    (host_pb2_grpc.add_HostInterfaceServicer_to_server, HostServant),
    (host_pb2_grpc.add_OwnerInterfaceServicer_to_server, OwnerServant),
    (host_pb2_grpc.add_DeedInterfaceServicer_to_server, DeedServant),
    (host_pb2_grpc.add_ProcInterfaceServicer_to_server, ProcServant),
    (facility_pb2_grpc.add_FacilityInterfaceServicer_to_server, FacilityServant),
    (facility_pb2_grpc.add_AllocationInterfaceServicer_to_server, AllocationServant),
    (filter_pb2_grpc.add_FilterInterfaceServicer_to_server, FilterServant),
    (filter_pb2_grpc.add_MatcherInterfaceServicer_to_server, MatcherServant),
    (filter_pb2_grpc.add_ActionInterfaceServicer_to_server, ActionServant),
    (comment_pb2_grpc.add_CommentInterfaceServicer_to_server, CommentServant),
    (depend_pb2_grpc.add_DependInterfaceServicer_to_server, DependServant),
    (limit_pb2_grpc.add_LimitInterfaceServicer_to_server, LimitServant),
    (service_pb2_grpc.add_ServiceInterfaceServicer_to_server, ServiceServant),
    (service_pb2_grpc.add_ServiceOverrideInterfaceServicer_to_server, ServiceOverrideServant),
    (subscription_pb2_grpc.add_SubscriptionInterfaceServicer_to_server, SubscriptionServant),
    (task_pb2_grpc.add_TaskInterfaceServicer_to_server, TaskServant),
    (department_pb2_grpc.add_DepartmentInterfaceServicer_to_server, DepartmentServant),
    (
        renderPartition_pb2_grpc.add_RenderPartitionInterfaceServicer_to_server,
        RenderPartitionServant,
    ),
)


def service_names() -> list[str]:
    """Fully qualified names of the services the sandbox registers."""
    names = []
    for _, servant in SERVICES:
        for base in servant.__mro__:
            if base.__name__.endswith("Servicer"):
                module = base.__module__.rsplit(".", 1)[-1].removesuffix("_pb2_grpc")
                names.append(f"{module}.{base.__name__.removesuffix('Servicer')}")
                break
    return names


class Sandbox:
    """A running sandbox: the farm, its gRPC server and its ticker thread."""

    def __init__(self, config: SandboxConfig, farm: Farm, server: grpc.Server, port: int) -> None:
        self.config = config
        self.farm = farm
        self.port = port
        self.address = f"{config.host}:{port}"
        self._server = server
        self._stop = threading.Event()
        self._stopped = False
        self._lock = threading.Lock()
        self._ticker = threading.Thread(target=self._tick, name="sandbox-ticker", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.farm.sync()
            except Exception:  # keep the farm moving even if one step fails
                log.exception("sandbox tick failed")

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop the ticker and the server; safe to call more than once."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop.set()
        self._ticker.join(timeout=5.0)
        self._server.stop(grace).wait(timeout=(grace or 0) + 5.0)

    def wait(self) -> None:
        self._server.wait_for_termination()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def build_farm(config: SandboxConfig) -> Farm:
    clock: Clock = config.clock if config.clock is not None else WallClock()
    farm = Farm(config, clock)
    build_demo(farm, config)
    return farm


def start_sandbox(
    config: SandboxConfig | None = None,
    *,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    prepare: Callable[[Farm], None] | None = None,
) -> Sandbox:
    """Build the demo farm, serve it over gRPC and start the farm's clock.

    The two hooks let a harness (``bench/``) reuse this start-up instead of copying it:
    ``interceptors`` are grpc server interceptors (for example a call counter), and
    ``prepare`` runs on the built farm, under its lock, before the server takes calls
    (for example to add a job the demo does not have).
    """
    config = config or SandboxConfig()
    farm = build_farm(config)
    if prepare is not None:
        with farm.lock:
            prepare(farm)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=config.max_workers, thread_name_prefix="sandbox"),
        interceptors=list(interceptors),
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ],
    )
    for register, servant in SERVICES:
        register(servant(farm), server)
    try:
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError as err:  # grpcio's way of saying the bind failed
        server.stop(None)
        raise OSError(f"could not bind {config.host}:{config.port}: {err}") from None
    if port == 0:
        server.stop(None)
        raise OSError(f"could not bind {config.host}:{config.port}")
    server.start()
    return Sandbox(config, farm, server, port)
