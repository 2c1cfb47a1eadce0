"""service.ServiceInterface and service.ServiceOverrideInterface."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import service_pb2, service_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import Service
from opencue_sandbox.servicers.base import Servant, rpc

Ctx: TypeAlias = grpc.ServicerContext


def service_from_msg(id_: str, msg: service_pb2.Service) -> Service:
    return Service(
        id=id_,
        name=msg.name,
        threadable=msg.threadable,
        min_cores=msg.min_cores or 100,
        max_cores=msg.max_cores,
        min_memory=msg.min_memory or 3355443,
        min_gpu_memory=msg.min_gpu_memory,
        tags=list(msg.tags) or ["general"],
        timeout=msg.timeout,
        timeout_llu=msg.timeout_llu,
        min_gpus=msg.min_gpus,
        max_gpus=msg.max_gpus,
        min_memory_increase=msg.min_memory_increase,
    )


def _update(target: Service, msg: service_pb2.Service) -> None:
    fresh = service_from_msg(target.id, msg)
    for field in (
        "name",
        "threadable",
        "min_cores",
        "max_cores",
        "min_memory",
        "min_gpu_memory",
        "tags",
        "timeout",
        "timeout_llu",
        "min_gpus",
        "max_gpus",
        "min_memory_increase",
    ):
        setattr(target, field, getattr(fresh, field))


class ServiceServant(Servant, service_pb2_grpc.ServiceInterfaceServicer):
    @rpc()
    def CreateService(
        self, request: service_pb2.ServiceCreateServiceRequest, context: Ctx
    ) -> service_pb2.ServiceCreateServiceResponse:
        with self.farm.mutate() as state:
            if any(s.name == request.data.name for s in state.services.values()):
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"A service named {request.data.name} already exists"
                )
            svc = service_from_msg(state.new_id(), request.data)
            state.services[svc.id] = svc
            msg = protos.service(svc)
        return service_pb2.ServiceCreateServiceResponse(service=msg)

    @rpc()
    def Delete(
        self, request: service_pb2.ServiceDeleteRequest, context: Ctx
    ) -> service_pb2.ServiceDeleteResponse:
        with self.farm.mutate() as state:
            svc = self._find(request.service)
            del state.services[svc.id]
        return service_pb2.ServiceDeleteResponse()

    @rpc()
    def GetDefaultServices(
        self, request: service_pb2.ServiceGetDefaultServicesRequest, context: Ctx
    ) -> service_pb2.ServiceGetDefaultServicesResponse:
        with self.farm.read() as state:
            msgs = [
                protos.service(s) for s in sorted(state.services.values(), key=lambda s: s.name)
            ]
        return service_pb2.ServiceGetDefaultServicesResponse(
            services=service_pb2.ServiceSeq(services=msgs)
        )

    @rpc("not_found")
    def GetService(
        self, request: service_pb2.ServiceGetServiceRequest, context: Ctx
    ) -> service_pb2.ServiceGetServiceResponse:
        with self.farm.read() as state:
            for svc in state.services.values():
                if svc.name == request.name:
                    return service_pb2.ServiceGetServiceResponse(service=protos.service(svc))
        raise Missing("service")

    @rpc()
    def Update(
        self, request: service_pb2.ServiceUpdateRequest, context: Ctx
    ) -> service_pb2.ServiceUpdateResponse:
        with self.farm.mutate():
            _update(self._find(request.service), request.service)
        return service_pb2.ServiceUpdateResponse()

    def _find(self, msg: service_pb2.Service) -> Service:
        state = self.farm.state
        found = state.services.get(msg.id)
        if found is None:
            found = next((s for s in state.services.values() if s.name == msg.name), None)
        if found is None:
            raise Missing("service")
        return found


class ServiceOverrideServant(Servant, service_pb2_grpc.ServiceOverrideInterfaceServicer):
    @rpc()
    def Delete(
        self, request: service_pb2.ServiceOverrideDeleteRequest, context: Ctx
    ) -> service_pb2.ServiceOverrideDeleteResponse:
        with self.farm.mutate() as state:
            override = state.overrides.get(request.service.id)
            if override is None:
                raise Missing("service override")
            del state.overrides[override.id]
            override.show.overrides.pop(override.data.name, None)
        return service_pb2.ServiceOverrideDeleteResponse()

    @rpc()
    def Update(
        self, request: service_pb2.ServiceOverrideUpdateRequest, context: Ctx
    ) -> service_pb2.ServiceOverrideUpdateResponse:
        with self.farm.mutate() as state:
            override = state.overrides.get(request.service.id)
            if override is None:
                raise Missing("service override")
            old_name = override.data.name
            _update(override.data, request.service)
            if old_name != override.data.name:
                override.show.overrides.pop(old_name, None)
                override.show.overrides[override.data.name] = override
        return service_pb2.ServiceOverrideUpdateResponse()
