"""show.ShowInterface: shows and what hangs off them (groups, filters, subscriptions...)."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import (
    department_pb2,
    filter_pb2,
    host_pb2,
    job_pb2,
    service_pb2,
    show_pb2,
    show_pb2_grpc,
    subscription_pb2,
)

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import (
    Filter,
    Group,
    Owner,
    ServiceOverride,
    Show,
    Subscription,
)
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.refs import show_of
from opencue_sandbox.servicers.service import service_from_msg

Ctx: TypeAlias = grpc.ServicerContext


class ShowServant(Servant, show_pb2_grpc.ShowInterfaceServicer):
    @rpc("not_found")
    def FindShow(
        self, request: show_pb2.ShowFindShowRequest, context: Ctx
    ) -> show_pb2.ShowFindShowResponse:
        with self.farm.read() as state:
            msg = protos.show(state.show_named(request.name))
        return show_pb2.ShowFindShowResponse(show=msg)

    @rpc()
    def GetShows(
        self, request: show_pb2.ShowGetShowsRequest, context: Ctx
    ) -> show_pb2.ShowGetShowsResponse:
        with self.farm.read() as state:
            shows = [protos.show(s) for s in sorted(state.shows.values(), key=lambda s: s.name)]
        return show_pb2.ShowGetShowsResponse(shows=show_pb2.ShowSeq(shows=shows))

    @rpc()
    def GetActiveShows(
        self, request: show_pb2.ShowGetActiveShowsRequest, context: Ctx
    ) -> show_pb2.ShowGetActiveShowsResponse:
        with self.farm.read() as state:
            shows = [
                protos.show(s)
                for s in sorted(state.shows.values(), key=lambda s: s.name)
                if s.active
            ]
        return show_pb2.ShowGetActiveShowsResponse(shows=show_pb2.ShowSeq(shows=shows))

    @rpc()
    def CreateShow(
        self, request: show_pb2.ShowCreateShowRequest, context: Ctx
    ) -> show_pb2.ShowCreateShowResponse:
        with self.farm.mutate() as state:
            name = request.name.strip()
            taken = any(s.name == name for s in state.shows.values())
            if not name or taken or len(name) < 3:
                raise FarmError(grpc.StatusCode.INTERNAL, "Show could not be created.")
            show = Show(state.new_id(), name)
            root = Group(state.new_id(), name, show, None)
            show.root = root
            state.shows[show.id] = show
            state.groups[root.id] = root
            msg = protos.show(show)
        return show_pb2.ShowCreateShowResponse(show=msg)

    @rpc()
    def Delete(
        self, request: show_pb2.ShowDeleteRequest, context: Ctx
    ) -> show_pb2.ShowDeleteResponse:
        with self.farm.mutate() as state:
            show = show_of(state, request.show)
            if show.jobs:
                raise FarmError(
                    grpc.StatusCode.INTERNAL,
                    f"Show {show.name} has jobs and cannot be deleted.",
                )
            del state.shows[show.id]
            for gid in [g.id for g in state.groups.values() if g.show is show]:
                del state.groups[gid]
            for sid in [s.id for s in state.subscriptions.values() if s.show is show]:
                del state.subscriptions[sid]
        return show_pb2.ShowDeleteResponse()

    @rpc()
    def GetRootGroup(
        self, request: show_pb2.ShowGetRootGroupRequest, context: Ctx
    ) -> show_pb2.ShowGetRootGroupResponse:
        with self.farm.read() as state:
            show = show_of(state, request.show)
            assert show.root is not None
            msg = protos.group(show.root)
        return show_pb2.ShowGetRootGroupResponse(group=msg)

    @rpc()
    def GetGroups(
        self, request: show_pb2.ShowGetGroupsRequest, context: Ctx
    ) -> show_pb2.ShowGetGroupsResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            groups = [g for g in state.groups.values() if g.show is show]
            groups.sort(key=lambda g: (g.level, g.name))
            msgs = [protos.group(g) for g in groups]
        return show_pb2.ShowGetGroupsResponse(groups=job_pb2.GroupSeq(groups=msgs))

    @rpc()
    def GetJobs(
        self, request: show_pb2.ShowGetJobsRequest, context: Ctx
    ) -> show_pb2.ShowGetJobsResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            jobs = sorted((j for j in show.jobs.values() if not j.finished), key=lambda j: j.name)
            msgs = [protos.job(j) for j in jobs]
        return show_pb2.ShowGetJobsResponse(jobs=job_pb2.JobSeq(jobs=msgs))

    @rpc()
    def GetJobWhiteboard(
        self, request: show_pb2.ShowGetJobWhiteboardRequest, context: Ctx
    ) -> show_pb2.ShowGetJobWhiteboardResponse:
        with self.farm.read() as state:
            show = show_of(state, request.show)
            assert show.root is not None
            msg = protos.nested_group(show.root)
        return show_pb2.ShowGetJobWhiteboardResponse(whiteboard=msg)

    # ---- settings ----------------------------------------------------------------------
    def _set(self, show_msg: object, **values: object) -> None:
        with self.farm.mutate() as state:
            show = show_of(state, show_msg)
            for key, value in values.items():
                setattr(show, key, value)
            show.cache = None
            state.dispatch_dirty = True
            state.order_dirty = True

    @rpc()
    def EnableBooking(
        self, request: show_pb2.ShowEnableBookingRequest, context: Ctx
    ) -> show_pb2.ShowEnableBookingResponse:
        self._set(request.show, booking_enabled=request.enabled)
        return show_pb2.ShowEnableBookingResponse()

    @rpc()
    def EnableDispatching(
        self, request: show_pb2.ShowEnableDispatchingRequest, context: Ctx
    ) -> show_pb2.ShowEnableDispatchingResponse:
        self._set(request.show, dispatch_enabled=request.enabled)
        return show_pb2.ShowEnableDispatchingResponse()

    @rpc()
    def SetActive(
        self, request: show_pb2.ShowSetActiveRequest, context: Ctx
    ) -> show_pb2.ShowSetActiveResponse:
        self._set(request.show, active=request.value)
        return show_pb2.ShowSetActiveResponse()

    @rpc()
    def SetCommentEmail(
        self, request: show_pb2.ShowSetCommentEmailRequest, context: Ctx
    ) -> show_pb2.ShowSetCommentEmailResponse:
        self._set(request.show, comment_email=request.email)
        return show_pb2.ShowSetCommentEmailResponse()

    @rpc()
    def SetDefaultMaxCores(
        self, request: show_pb2.ShowSetDefaultMaxCoresRequest, context: Ctx
    ) -> show_pb2.ShowSetDefaultMaxCoresResponse:
        self._set(request.show, default_max_cores=request.max_cores)
        return show_pb2.ShowSetDefaultMaxCoresResponse()

    @rpc()
    def SetDefaultMinCores(
        self, request: show_pb2.ShowSetDefaultMinCoresRequest, context: Ctx
    ) -> show_pb2.ShowSetDefaultMinCoresResponse:
        self._set(request.show, default_min_cores=request.min_cores)
        return show_pb2.ShowSetDefaultMinCoresResponse()

    @rpc()
    def SetDefaultMaxGpus(
        self, request: show_pb2.ShowSetDefaultMaxGpusRequest, context: Ctx
    ) -> show_pb2.ShowSetDefaultMaxGpusResponse:
        self._set(request.show, default_max_gpus=float(request.max_gpus))
        return show_pb2.ShowSetDefaultMaxGpusResponse()

    @rpc()
    def SetDefaultMinGpus(
        self, request: show_pb2.ShowSetDefaultMinGpusRequest, context: Ctx
    ) -> show_pb2.ShowSetDefaultMinGpusResponse:
        self._set(request.show, default_min_gpus=float(request.min_gpus))
        return show_pb2.ShowSetDefaultMinGpusResponse()

    @rpc()
    def SetSchedulerManaged(
        self, request: show_pb2.ShowSetSchedulerManagedRequest, context: Ctx
    ) -> show_pb2.ShowSetSchedulerManagedResponse:
        self._set(request.show, scheduler_managed=request.enabled)
        return show_pb2.ShowSetSchedulerManagedResponse()

    # ---- filters, owners, departments ----------------------------------------------------
    @rpc()
    def CreateFilter(
        self, request: show_pb2.ShowCreateFilterRequest, context: Ctx
    ) -> show_pb2.ShowCreateFilterResponse:
        with self.farm.mutate() as state:
            show = show_of(state, request.show)
            order = float(len(show.filters) + 1)
            flt = Filter(state.new_id(), request.name, show, order=order, enabled=False)
            show.filters.append(flt)
            state.filters[flt.id] = flt
            msg = protos.filter_(flt)
        return show_pb2.ShowCreateFilterResponse(filter=msg)

    @rpc("not_found")
    def FindFilter(
        self, request: show_pb2.ShowFindFilterRequest, context: Ctx
    ) -> show_pb2.ShowFindFilterResponse:
        with self.farm.read() as state:
            show = show_of(state, request.show)
            for flt in show.filters:
                if flt.name == request.name:
                    return show_pb2.ShowFindFilterResponse(filter=protos.filter_(flt))
        raise Missing("filter")

    @rpc()
    def GetFilters(
        self, request: show_pb2.ShowGetFiltersRequest, context: Ctx
    ) -> show_pb2.ShowGetFiltersResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            msgs = [protos.filter_(f) for f in sorted(show.filters, key=lambda f: f.order)]
        return show_pb2.ShowGetFiltersResponse(filters=filter_pb2.FilterSeq(filters=msgs))

    @rpc()
    def CreateOwner(
        self, request: show_pb2.ShowCreateOwnerRequest, context: Ctx
    ) -> show_pb2.ShowCreateOwnerResponse:
        with self.farm.mutate() as state:
            show = show_of(state, request.show)
            owner = Owner(state.new_id(), request.name, show)
            state.owners[owner.id] = owner
            msg = protos.owner(owner)
        return show_pb2.ShowCreateOwnerResponse(owner=msg)

    @rpc()
    def GetDeeds(
        self, request: show_pb2.ShowGetDeedsRequest, context: Ctx
    ) -> show_pb2.ShowGetDeedsResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            msgs = [
                protos.deed(d.id, d.host, d.owner)
                for o in state.owners.values()
                if o.show is show
                for d in o.deeds.values()
            ]
        return show_pb2.ShowGetDeedsResponse(deeds=host_pb2.DeedSeq(deeds=msgs))

    @rpc("not_found")
    def GetDepartment(
        self, request: show_pb2.ShowGetDepartmentRequest, context: Ctx
    ) -> show_pb2.ShowGetDepartmentResponse:
        with self.farm.read() as state:
            show = show_of(state, request.show)
            dept = show.departments.get(request.department)
            if dept is None:
                raise Missing("department")
            msg = protos.department(dept)
        return show_pb2.ShowGetDepartmentResponse(department=msg)

    @rpc()
    def GetDepartments(
        self, request: show_pb2.ShowGetDepartmentsRequest, context: Ctx
    ) -> show_pb2.ShowGetDepartmentsResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            msgs = [protos.department(d) for _, d in sorted(show.departments.items())]
        return show_pb2.ShowGetDepartmentsResponse(
            departments=department_pb2.DepartmentSeq(departments=msgs)
        )

    # ---- subscriptions and service overrides ---------------------------------------------
    @rpc()
    def CreateSubscription(
        self, request: show_pb2.ShowCreateSubscriptionRequest, context: Ctx
    ) -> show_pb2.ShowCreateSubscriptionResponse:
        with self.farm.mutate() as state:
            show = show_of(state, request.show)
            alloc = state.alloc(request.allocation_id)
            for sub in state.subscriptions.values():
                if sub.show is show and sub.alloc is alloc:
                    raise FarmError(
                        grpc.StatusCode.INTERNAL,
                        f"A subscription to {alloc.name} already exists for {show.name}",
                    )
            sub = Subscription(
                state.new_id(), show, alloc, int(request.size * 100), int(request.burst * 100)
            )
            state.subscriptions[sub.id] = sub
            state.dispatch_dirty = True
            msg = protos.subscription(sub)
        return show_pb2.ShowCreateSubscriptionResponse(subscription=msg)

    @rpc()
    def GetSubscriptions(
        self, request: show_pb2.ShowGetSubscriptionRequest, context: Ctx
    ) -> show_pb2.ShowGetSubscriptionResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            subs = sorted(
                (s for s in state.subscriptions.values() if s.show is show), key=lambda s: s.name
            )
            msgs = [protos.subscription(s) for s in subs]
        return show_pb2.ShowGetSubscriptionResponse(
            subscriptions=subscription_pb2.SubscriptionSeq(subscriptions=msgs)
        )

    @rpc()
    def CreateServiceOverride(
        self, request: show_pb2.ShowCreateServiceOverrideRequest, context: Ctx
    ) -> show_pb2.ShowCreateServiceOverrideResponse:
        with self.farm.mutate() as state:
            show = show_of(state, request.show)
            data = service_from_msg(state.new_id(), request.service)
            override = ServiceOverride(state.new_id(), show, data)
            show.overrides[data.name] = override
            state.overrides[override.id] = override
            msg = protos.service_override(override)
        return show_pb2.ShowCreateServiceOverrideResponse(service_override=msg)

    @rpc("not_found")
    def GetServiceOverride(
        self, request: show_pb2.ShowGetServiceOverrideRequest, context: Ctx
    ) -> show_pb2.ShowGetServiceOverrideResponse:
        with self.farm.read() as state:
            show = show_of(state, request.show)
            override = show.overrides.get(request.name)
            if override is None:
                raise Missing("service override")
            msg = protos.service_override(override)
        return show_pb2.ShowGetServiceOverrideResponse(service_override=msg)

    @rpc()
    def GetServiceOverrides(
        self, request: show_pb2.ShowGetServiceOverridesRequest, context: Ctx
    ) -> show_pb2.ShowGetServiceOverridesResponse:

        with self.farm.read() as state:
            show = show_of(state, request.show)
            msgs = [protos.service_override(o) for _, o in sorted(show.overrides.items())]
        return show_pb2.ShowGetServiceOverridesResponse(
            service_overrides=service_pb2.ServiceOverrideSeq(service_overrides=msgs)
        )
