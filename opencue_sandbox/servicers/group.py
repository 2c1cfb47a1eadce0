"""job.GroupInterface: the show's group tree and group-level limits and defaults."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import job_pb2, job_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import Group
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.refs import group_of, job_of

Ctx: TypeAlias = grpc.ServicerContext


class GroupServant(Servant, job_pb2_grpc.GroupInterfaceServicer):
    @rpc("not_found")
    def FindGroup(
        self, request: job_pb2.GroupFindGroupRequest, context: Ctx
    ) -> job_pb2.GroupFindGroupResponse:
        with self.farm.read() as state:
            show = state.show_named(request.show)
            for group in state.groups.values():
                if group.show is show and group.name == request.name:
                    return job_pb2.GroupFindGroupResponse(group=protos.group(group))
        raise Missing("group")

    @rpc("not_found")
    def GetGroup(
        self, request: job_pb2.GroupGetGroupRequest, context: Ctx
    ) -> job_pb2.GroupGetGroupResponse:
        with self.farm.read() as state:
            msg = protos.group(state.group(request.id))
        return job_pb2.GroupGetGroupResponse(group=msg)

    @rpc()
    def GetGroups(
        self, request: job_pb2.GroupGetGroupsRequest, context: Ctx
    ) -> job_pb2.GroupGetGroupsResponse:
        with self.farm.read() as state:
            group = group_of(state, request.group)
            msgs = [protos.group(g) for g in sorted(group.children, key=lambda g: g.name)]
        return job_pb2.GroupGetGroupsResponse(groups=job_pb2.GroupSeq(groups=msgs))

    @rpc()
    def GetJobs(
        self, request: job_pb2.GroupGetJobsRequest, context: Ctx
    ) -> job_pb2.GroupGetJobsResponse:
        with self.farm.read() as state:
            group = group_of(state, request.group)
            jobs = sorted((j for j in group.jobs.values() if not j.finished), key=lambda j: j.name)
            msgs = [protos.job(j) for j in jobs]
        return job_pb2.GroupGetJobsResponse(jobs=job_pb2.JobSeq(jobs=msgs))

    @rpc()
    def CreateSubGroup(
        self, request: job_pb2.GroupCreateSubGroupRequest, context: Ctx
    ) -> job_pb2.GroupCreateSubGroupResponse:
        with self.farm.mutate() as state:
            parent = group_of(state, request.group)
            if any(g.name == request.name for g in parent.children) or not request.name:
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"A group named {request.name} already exists"
                )
            group = Group(
                state.new_id(), request.name, parent.show, parent, department=parent.department
            )
            parent.children.append(group)
            parent.cache = None
            state.groups[group.id] = group
            msg = protos.group(group)
        return job_pb2.GroupCreateSubGroupResponse(group=msg)

    @rpc()
    def Delete(
        self, request: job_pb2.GroupDeleteRequest, context: Ctx
    ) -> job_pb2.GroupDeleteResponse:
        with self.farm.mutate() as state:
            group = group_of(state, request.group)
            if group.parent is None:
                raise FarmError(
                    grpc.StatusCode.INTERNAL,
                    "Failed to remove group, root groups cannot be removed.",
                )
            active = [j for j in group.jobs.values() if not j.finished]
            if active or group.children:
                raise FarmError(
                    grpc.StatusCode.INTERNAL, "Failed to remove group, group has jobs or subgroups."
                )
            group.parent.children.remove(group)
            group.parent.cache = None
            del state.groups[group.id]
        return job_pb2.GroupDeleteResponse()

    @rpc()
    def ReparentGroups(
        self, request: job_pb2.GroupReparentGroupsRequest, context: Ctx
    ) -> job_pb2.GroupReparentGroupsResponse:
        with self.farm.mutate() as state:
            parent = group_of(state, request.group)
            for msg in request.groups.groups:
                child = group_of(state, msg)
                if child is parent or _is_ancestor(child, parent) or child.parent is None:
                    raise FarmError(
                        grpc.StatusCode.INTERNAL,
                        f"cannot reparent group {child.name} under {parent.name}",
                    )
                child.parent.children.remove(child)
                child.parent.cache = None
                child.parent = parent
                parent.children.append(child)
                _touch_tree(child)
        return job_pb2.GroupReparentGroupsResponse()

    @rpc()
    def ReparentJobs(
        self, request: job_pb2.GroupReparentJobsRequest, context: Ctx
    ) -> job_pb2.GroupReparentJobsResponse:
        with self.farm.mutate() as state:
            group = group_of(state, request.group)
            for msg in request.jobs.jobs:
                self.farm.move_job(job_of(state, msg), group)
        return job_pb2.GroupReparentJobsResponse()

    @rpc()
    def SetGroup(
        self, request: job_pb2.GroupSetGroupRequest, context: Ctx
    ) -> job_pb2.GroupSetGroupResponse:
        with self.farm.mutate() as state:
            child = group_of(state, request.group)
            parent = group_of(state, request.parent_group)
            if child.parent is None or child is parent or _is_ancestor(child, parent):
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"cannot move group {child.name} under {parent.name}"
                )
            child.parent.children.remove(child)
            child.parent = parent
            parent.children.append(child)
            _touch_tree(child)
        return job_pb2.GroupSetGroupResponse()

    def _set(self, group_msg: job_pb2.Group, **values: object) -> None:
        with self.farm.mutate() as state:
            group = group_of(state, group_msg)
            for key, value in values.items():
                setattr(group, key, value)
            group.cache = None
            state.dispatch_dirty = True

    @rpc()
    def SetName(
        self, request: job_pb2.GroupSetNameRequest, context: Ctx
    ) -> job_pb2.GroupSetNameResponse:
        self._set(request.group, name=request.name)
        with self.farm.read() as state:
            for job in group_of(state, request.group).jobs.values():
                state.touch_job(job)
        return job_pb2.GroupSetNameResponse()

    @rpc()
    def SetDepartment(
        self, request: job_pb2.GroupSetDeptRequest, context: Ctx
    ) -> job_pb2.GroupSetDeptResponse:
        self._set(request.group, department=request.dept)
        return job_pb2.GroupSetDeptResponse()

    @rpc()
    def SetDefaultJobPriority(
        self, request: job_pb2.GroupSetDefJobPriorityRequest, context: Ctx
    ) -> job_pb2.GroupSetDefJobPriorityResponse:
        self._set(request.group, default_job_priority=request.priority)
        return job_pb2.GroupSetDefJobPriorityResponse()

    @rpc()
    def SetDefaultJobMinCores(
        self, request: job_pb2.GroupSetDefJobMinCoresRequest, context: Ctx
    ) -> job_pb2.GroupSetDefJobMinCoresResponse:
        self._set(request.group, default_job_min_cores=request.min_cores)
        return job_pb2.GroupSetDefJobMinCoresResponse()

    @rpc()
    def SetDefaultJobMaxCores(
        self, request: job_pb2.GroupSetDefJobMaxCoresRequest, context: Ctx
    ) -> job_pb2.GroupSetDefJobMaxCoresResponse:
        self._set(request.group, default_job_max_cores=request.max_cores)
        return job_pb2.GroupSetDefJobMaxCoresResponse()

    @rpc()
    def SetDefaultJobMinGpus(
        self, request: job_pb2.GroupSetDefJobMinGpusRequest, context: Ctx
    ) -> job_pb2.GroupSetDefJobMinGpusResponse:
        self._set(request.group, default_job_min_gpus=float(request.min_gpus))
        return job_pb2.GroupSetDefJobMinGpusResponse()

    @rpc()
    def SetDefaultJobMaxGpus(
        self, request: job_pb2.GroupSetDefJobMaxGpusRequest, context: Ctx
    ) -> job_pb2.GroupSetDefJobMaxGpusResponse:
        self._set(request.group, default_job_max_gpus=float(request.max_gpus))
        return job_pb2.GroupSetDefJobMaxGpusResponse()

    @rpc()
    def SetMinCores(
        self, request: job_pb2.GroupSetMinCoresRequest, context: Ctx
    ) -> job_pb2.GroupSetMinCoresResponse:
        self._set(request.group, min_cores=request.min_cores)
        return job_pb2.GroupSetMinCoresResponse()

    @rpc()
    def SetMaxCores(
        self, request: job_pb2.GroupSetMaxCoresRequest, context: Ctx
    ) -> job_pb2.GroupSetMaxCoresResponse:
        self._set(request.group, max_cores=request.max_cores)
        return job_pb2.GroupSetMaxCoresResponse()

    @rpc()
    def SetMinGpus(
        self, request: job_pb2.GroupSetMinGpusRequest, context: Ctx
    ) -> job_pb2.GroupSetMinGpusResponse:
        self._set(request.group, min_gpus=float(request.min_gpus))
        return job_pb2.GroupSetMinGpusResponse()

    @rpc()
    def SetMaxGpus(
        self, request: job_pb2.GroupSetMaxGpusRequest, context: Ctx
    ) -> job_pb2.GroupSetMaxGpusResponse:
        self._set(request.group, max_gpus=float(request.max_gpus))
        return job_pb2.GroupSetMaxGpusResponse()


def _is_ancestor(candidate: Group, group: Group) -> bool:
    g = group.parent
    while g is not None:
        if g is candidate:
            return True
        g = g.parent
    return False


def _touch_tree(group: Group) -> None:
    group.cache = None
    if group.parent is not None:
        group.parent.cache = None
    for child in group.children:
        _touch_tree(child)
