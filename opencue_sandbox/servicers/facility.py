"""facility.FacilityInterface and facility.AllocationInterface."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import facility_pb2, facility_pb2_grpc, host_pb2, subscription_pb2

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import Allocation, Facility
from opencue_sandbox.search import match_hosts
from opencue_sandbox.servicers.base import Servant, rpc

Ctx: TypeAlias = grpc.ServicerContext


class FacilityServant(Servant, facility_pb2_grpc.FacilityInterfaceServicer):
    @rpc()
    def Create(
        self, request: facility_pb2.FacilityCreateRequest, context: Ctx
    ) -> facility_pb2.FacilityCreateResponse:
        with self.farm.mutate() as state:
            if any(f.name == request.name for f in state.facilities.values()):
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"A facility named {request.name} already exists"
                )
            fac = Facility(state.new_id(), request.name)
            state.facilities[fac.id] = fac
        return facility_pb2.FacilityCreateResponse(
            facility=facility_pb2.Facility(id=fac.id, name=fac.name)
        )

    @rpc("not_found")
    def Get(
        self, request: facility_pb2.FacilityGetRequest, context: Ctx
    ) -> facility_pb2.FacilityGetResponse:
        with self.farm.read() as state:
            fac = state.facility_named(request.name)
        return facility_pb2.FacilityGetResponse(
            facility=facility_pb2.Facility(id=fac.id, name=fac.name)
        )

    @rpc()
    def Delete(
        self, request: facility_pb2.FacilityDeleteRequest, context: Ctx
    ) -> facility_pb2.FacilityDeleteResponse:
        with self.farm.mutate() as state:
            fac = state.facility_named(request.name)
            if any(a.facility is fac for a in state.allocs.values()):
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"Facility {fac.name} still has allocations"
                )
            del state.facilities[fac.id]
        return facility_pb2.FacilityDeleteResponse()

    @rpc()
    def Rename(
        self, request: facility_pb2.FacilityRenameRequest, context: Ctx
    ) -> facility_pb2.FacilityRenameResponse:
        with self.farm.mutate() as state:
            fac = state.facilities.get(request.facility.id) or state.facility_named(
                request.facility.name
            )
            fac.name = request.new_name
        return facility_pb2.FacilityRenameResponse()


class AllocationServant(Servant, facility_pb2_grpc.AllocationInterfaceServicer):
    def _alloc(self, msg: facility_pb2.Allocation) -> Allocation:
        state = self.farm.state
        if msg.id:
            return state.alloc(msg.id)
        return state.alloc_named(msg.name)

    @rpc()
    def Create(
        self, request: facility_pb2.AllocCreateRequest, context: Ctx
    ) -> facility_pb2.AllocCreateResponse:
        with self.farm.mutate() as state:
            fac = state.facilities.get(request.facility.id) or state.facility_named(
                request.facility.name
            )
            name = f"{fac.name}.{request.name}"
            if any(a.name == name for a in state.allocs.values()):
                raise FarmError(grpc.StatusCode.INTERNAL, f"Allocation {name} already exists")
            alloc = Allocation(state.new_id(), name, request.tag or request.name, fac)
            state.allocs[alloc.id] = alloc
            msg = protos.allocation(alloc)
        return facility_pb2.AllocCreateResponse(allocation=msg)

    @rpc()
    def Delete(
        self, request: facility_pb2.AllocDeleteRequest, context: Ctx
    ) -> facility_pb2.AllocDeleteResponse:
        with self.farm.mutate() as state:
            alloc = self._alloc(request.allocation)
            if alloc.hosts or alloc is state.default_alloc:
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"Allocation {alloc.name} has hosts or is the default"
                )
            del state.allocs[alloc.id]
            for sid in [s.id for s in state.subscriptions.values() if s.alloc is alloc]:
                del state.subscriptions[sid]
        return facility_pb2.AllocDeleteResponse()

    @rpc("not_found")
    def Find(
        self, request: facility_pb2.AllocFindRequest, context: Ctx
    ) -> facility_pb2.AllocFindResponse:
        with self.farm.read() as state:
            msg = protos.allocation(state.alloc_named(request.name))
        return facility_pb2.AllocFindResponse(allocation=msg)

    @rpc("not_found")
    def Get(
        self, request: facility_pb2.AllocGetRequest, context: Ctx
    ) -> facility_pb2.AllocGetResponse:
        with self.farm.read() as state:
            msg = protos.allocation(state.alloc(request.id))
        return facility_pb2.AllocGetResponse(allocation=msg)

    @rpc()
    def GetAll(
        self, request: facility_pb2.AllocGetAllRequest, context: Ctx
    ) -> facility_pb2.AllocGetAllResponse:
        with self.farm.read() as state:
            allocs = sorted(state.allocs.values(), key=lambda a: a.name)
            msgs = [protos.allocation(a) for a in allocs]
        return facility_pb2.AllocGetAllResponse(
            allocations=facility_pb2.AllocationSeq(allocations=msgs)
        )

    @rpc("not_found")
    def GetDefault(
        self, request: facility_pb2.AllocGetDefaultRequest, context: Ctx
    ) -> facility_pb2.AllocGetDefaultResponse:
        with self.farm.read() as state:
            if state.default_alloc is None:
                raise Missing("allocation")
            msg = protos.allocation(state.default_alloc)
        return facility_pb2.AllocGetDefaultResponse(allocation=msg)

    @rpc()
    def SetDefault(
        self, request: facility_pb2.AllocSetDefaultRequest, context: Ctx
    ) -> facility_pb2.AllocSetDefaultResponse:
        with self.farm.mutate() as state:
            state.default_alloc = self._alloc(request.allocation)
        return facility_pb2.AllocSetDefaultResponse()

    @rpc()
    def GetHosts(
        self, request: facility_pb2.AllocGetHostsRequest, context: Ctx
    ) -> facility_pb2.AllocGetHostsResponse:
        with self.farm.read() as state:
            alloc = self._alloc(request.allocation)
            hosts = sorted(alloc.hosts.values(), key=lambda h: h.name)
            msgs = [protos.host(h, state.now_int) for h in hosts]
        return facility_pb2.AllocGetHostsResponse(hosts=host_pb2.HostSeq(hosts=msgs))

    @rpc()
    def FindHosts(
        self, request: facility_pb2.AllocFindHostsRequest, context: Ctx
    ) -> facility_pb2.AllocFindHostsResponse:
        with self.farm.read() as state:
            alloc = self._alloc(request.allocation)
            hosts = match_hosts(list(alloc.hosts.values()), request.r)
            msgs = [protos.host(h, state.now_int) for h in hosts]
        return facility_pb2.AllocFindHostsResponse(hosts=host_pb2.HostSeq(hosts=msgs))

    @rpc()
    def GetSubscriptions(
        self, request: facility_pb2.AllocGetSubscriptionsRequest, context: Ctx
    ) -> facility_pb2.AllocGetSubscriptionsResponse:
        with self.farm.read() as state:
            alloc = self._alloc(request.allocation)
            subs = sorted(
                (s for s in state.subscriptions.values() if s.alloc is alloc), key=lambda s: s.name
            )
            msgs = [protos.subscription(s) for s in subs]
        return facility_pb2.AllocGetSubscriptionsResponse(
            subscriptions=subscription_pb2.SubscriptionSeq(subscriptions=msgs)
        )

    @rpc()
    def ReparentHosts(
        self, request: facility_pb2.AllocReparentHostsRequest, context: Ctx
    ) -> facility_pb2.AllocReparentHostsResponse:
        with self.farm.mutate() as state:
            alloc = self._alloc(request.allocation)
            for msg in request.hosts.hosts:
                host = state.host_ref(msg.id, msg.name)
                host.alloc.hosts.pop(host.id, None)
                host.tags = [alloc.tag] + [t for t in host.tags if t != host.alloc.tag]
                host.alloc = alloc
                alloc.hosts[host.id] = host
                host.cache = None
            state.dispatch_dirty = True
        return facility_pb2.AllocReparentHostsResponse()

    @rpc()
    def SetBillable(
        self, request: facility_pb2.AllocSetBillableRequest, context: Ctx
    ) -> facility_pb2.AllocSetBillableResponse:
        with self.farm.mutate():
            self._alloc(request.allocation).billable = request.value
        return facility_pb2.AllocSetBillableResponse()

    @rpc()
    def SetName(
        self, request: facility_pb2.AllocSetNameRequest, context: Ctx
    ) -> facility_pb2.AllocSetNameResponse:
        with self.farm.mutate():
            alloc = self._alloc(request.allocation)
            alloc.name = f"{alloc.facility.name}.{request.name}"
            for host in alloc.hosts.values():
                host.cache = None
        return facility_pb2.AllocSetNameResponse()

    @rpc()
    def SetTag(
        self, request: facility_pb2.AllocSetTagRequest, context: Ctx
    ) -> facility_pb2.AllocSetTagResponse:
        with self.farm.mutate() as state:
            alloc = self._alloc(request.allocation)
            old = alloc.tag
            alloc.tag = request.tag
            for host in alloc.hosts.values():
                host.tags = [request.tag if t == old else t for t in host.tags]
                host.cache = None
            state.dispatch_dirty = True
        return facility_pb2.AllocSetTagResponse()
