"""Render partitions (Cuebot's local booking) and renderPartition.RenderPartitionInterface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from opencue_proto import renderPartition_pb2 as rp_pb2
from opencue_proto import renderPartition_pb2_grpc as rp_grpc

from opencue_sandbox.farm import Farm
from opencue_sandbox.model import Frame, Job, Layer
from opencue_sandbox.servicers.base import Servant, rpc

Ctx: TypeAlias = grpc.ServicerContext


@dataclass(eq=False)
class Partition:
    id: str
    host: str
    job: Job
    layer: Layer | None
    frame: Frame | None
    threads: int
    max_cores: int
    max_memory: int
    max_gpu_memory: int
    max_gpus: int

    def msg(self) -> rp_pb2.RenderPartition:
        kind = (
            rp_pb2.FRAME_PARTITION
            if self.frame is not None
            else rp_pb2.LAYER_PARTITION
            if self.layer is not None
            else rp_pb2.JOB_PARTITION
        )
        return rp_pb2.RenderPartition(
            id=self.id,
            job=self.job.name,
            layer=self.layer.name if self.layer is not None else "",
            frame=self.frame.name if self.frame is not None else "",
            render_part_type=kind,
            host=self.host,
            cores=self.max_cores,
            memory=self.max_memory,
            max_cores=self.max_cores,
            max_memory=self.max_memory,
            max_gpu_memory=self.max_gpu_memory,
            threads=self.threads,
            max_gpus=self.max_gpus,
        )


def partitions(farm: Farm) -> dict[str, Partition]:
    store: dict[str, Partition] = farm.state.partitions
    return store


def add_partition(
    farm: Farm,
    request: Any,
    job: Job,
    layer: Layer | None = None,
    frame: Frame | None = None,
) -> rp_pb2.RenderPartition:
    """Book a local render partition on a host; the host must exist."""
    state = farm.state
    host = state.host_named(request.host)
    part = Partition(
        id=state.new_id(),
        host=host.name,
        job=job,
        layer=layer,
        frame=frame,
        threads=request.threads,
        max_cores=request.max_cores,
        max_memory=request.max_memory,
        max_gpu_memory=request.max_gpu_memory,
        max_gpus=request.max_gpus,
    )
    partitions(farm)[part.id] = part
    return part.msg()


class RenderPartitionServant(Servant, rp_grpc.RenderPartitionInterfaceServicer):
    @rpc()
    def Delete(
        self, request: rp_pb2.RenderPartDeleteRequest, context: Ctx
    ) -> rp_pb2.RenderPartDeleteResponse:
        with self.farm.mutate():
            store = partitions(self.farm)
            store.pop(request.render_partition.id, None)
        return rp_pb2.RenderPartDeleteResponse()

    @rpc()
    def SetMaxResources(
        self, request: rp_pb2.RenderPartSetMaxResourcesRequest, context: Ctx
    ) -> rp_pb2.RenderPartSetMaxResourcesResponse:
        with self.farm.mutate():
            part = partitions(self.farm).get(request.render_partition.id)
            if part is not None:
                part.max_cores = request.cores
                part.max_memory = request.memory
                part.max_gpu_memory = request.gpu_memory
                part.max_gpus = request.gpus
        return rp_pb2.RenderPartSetMaxResourcesResponse()
