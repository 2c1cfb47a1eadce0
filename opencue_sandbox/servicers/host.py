"""host.HostInterface, OwnerInterface, DeedInterface and ProcInterface."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import comment_pb2, host_pb2, host_pb2_grpc
from opencue_proto import renderPartition_pb2 as rp_pb2

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import Comment, Deed, Host, Owner, Proc
from opencue_sandbox.search import match_hosts, match_procs
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.partition import partitions
from opencue_sandbox.servicers.refs import host_of, job_of
from opencue_sandbox.state import FarmState

Ctx: TypeAlias = grpc.ServicerContext


def _touch(host: Host) -> None:
    host.cache = None


def take_deed(state: FarmState, owner: Owner, host: Host) -> Deed:
    """Give ``host`` to ``owner`` (replacing any previous deed), as TakeOwnership does."""
    if host.deed is not None:
        old = host.deed
        old.owner.deeds.pop(old.id, None)
        state.deeds.pop(old.id, None)
    deed = Deed(state.new_id(), host, owner)
    owner.deeds[deed.id] = deed
    host.deed = deed
    state.deeds[deed.id] = deed
    return deed


class HostServant(Servant, host_pb2_grpc.HostInterfaceServicer):
    @rpc("not_found")
    def FindHost(
        self, request: host_pb2.HostFindHostRequest, context: Ctx
    ) -> host_pb2.HostFindHostResponse:
        with self.farm.read() as state:
            msg = protos.host(state.host_named(request.name), state.now_int)
        return host_pb2.HostFindHostResponse(host=msg)

    @rpc("not_found")
    def GetHost(
        self, request: host_pb2.HostGetHostRequest, context: Ctx
    ) -> host_pb2.HostGetHostResponse:
        with self.farm.read() as state:
            msg = protos.host(state.host(request.id), state.now_int)
        return host_pb2.HostGetHostResponse(host=msg)

    @rpc()
    def GetHosts(
        self, request: host_pb2.HostGetHostsRequest, context: Ctx
    ) -> host_pb2.HostGetHostsResponse:
        with self.farm.read() as state:
            now = state.now_int
            msgs = [protos.host(h, now) for h in match_hosts(list(state.hosts.values()), request.r)]
        return host_pb2.HostGetHostsResponse(hosts=host_pb2.HostSeq(hosts=msgs))

    @rpc()
    def GetHostWhiteboard(
        self, request: host_pb2.HostGetHostWhiteboardRequest, context: Ctx
    ) -> host_pb2.HostGetHostWhiteboardResponse:
        with self.farm.read() as state:
            now = state.now_int
            hosts = sorted(state.hosts.values(), key=lambda h: h.name)
            msgs = [protos.nested_host(h, now) for h in hosts]
        return host_pb2.HostGetHostWhiteboardResponse(
            nested_hosts=host_pb2.NestedHostSeq(nested_hosts=msgs)
        )

    @rpc()
    def GetProcs(
        self, request: host_pb2.HostGetProcsRequest, context: Ctx
    ) -> host_pb2.HostGetProcsResponse:
        with self.farm.read() as state:
            host = host_of(state, request.host)
            msgs = [
                protos.proc(p, state.now_int)
                for p in sorted(host.procs.values(), key=lambda p: p.booked_time)
            ]
        return host_pb2.HostGetProcsResponse(procs=host_pb2.ProcSeq(procs=msgs))

    @rpc()
    def GetComments(
        self, request: host_pb2.HostGetCommentsRequest, context: Ctx
    ) -> host_pb2.HostGetCommentsResponse:
        with self.farm.read() as state:
            msgs = [protos.comment(c) for c in host_of(state, request.host).comments]
        return host_pb2.HostGetCommentsResponse(comments=comment_pb2.CommentSeq(comments=msgs))

    @rpc()
    def AddComment(
        self, request: host_pb2.HostAddCommentRequest, context: Ctx
    ) -> host_pb2.HostAddCommentResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            c = request.new_comment
            comment = Comment(
                state.new_id(), state.now_int, c.user, c.subject, c.message, "host", host.id
            )
            host.comments.append(comment)
            state.comments[comment.id] = comment
            _touch(host)
        return host_pb2.HostAddCommentResponse()

    @rpc()
    def GetDeed(
        self, request: host_pb2.HostGetDeedRequest, context: Ctx
    ) -> host_pb2.HostGetDeedResponse:
        with self.farm.read() as state:
            host = host_of(state, request.host)
            if host.deed is None:
                raise Missing("deed")
            msg = protos.deed(host.deed.id, host, host.deed.owner)
        return host_pb2.HostGetDeedResponse(deed=msg)

    @rpc()
    def GetOwner(
        self, request: host_pb2.HostGetOwnerRequest, context: Ctx
    ) -> host_pb2.HostGetOwnerResponse:
        with self.farm.read() as state:
            host = host_of(state, request.host)
            if host.deed is None:
                raise Missing("owner")
            msg = protos.owner(host.deed.owner)
        return host_pb2.HostGetOwnerResponse(owner=msg)

    @rpc()
    def GetRenderPartitions(
        self, request: host_pb2.HostGetRenderPartitionsRequest, context: Ctx
    ) -> host_pb2.HostGetRenderPartitionsResponse:
        with self.farm.read() as state:
            host = host_of(state, request.host)
            msgs = [p.msg() for p in partitions(self.farm).values() if p.host == host.name]
        return host_pb2.HostGetRenderPartitionsResponse(
            render_partitions=rp_pb2.RenderPartitionSeq(render_partitions=msgs)
        )

    # ---- state changes ---------------------------------------------------------------------
    def _set(self, host_msg: host_pb2.Host, **values: object) -> Host:
        with self.farm.mutate() as state:
            host = host_of(state, host_msg)
            for key, value in values.items():
                setattr(host, key, value)
            _touch(host)
            state.dispatch_dirty = True
        return host

    @rpc()
    def Lock(self, request: host_pb2.HostLockRequest, context: Ctx) -> host_pb2.HostLockResponse:
        self._set(request.host, lock_state=host_pb2.LOCKED)
        return host_pb2.HostLockResponse()

    @rpc()
    def Unlock(
        self, request: host_pb2.HostUnlockRequest, context: Ctx
    ) -> host_pb2.HostUnlockResponse:
        self._set(request.host, lock_state=host_pb2.OPEN)
        return host_pb2.HostUnlockResponse()

    @rpc()
    def Reboot(
        self, request: host_pb2.HostRebootRequest, context: Ctx
    ) -> host_pb2.HostRebootResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            for proc in list(host.procs.values()):
                self.farm.sched.stop(proc)
            self.farm.sched.reboot(host)
        return host_pb2.HostRebootResponse()

    @rpc()
    def RebootWhenIdle(
        self, request: host_pb2.HostRebootWhenIdleRequest, context: Ctx
    ) -> host_pb2.HostRebootWhenIdleResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            host.lock_state = host_pb2.LOCKED
            if host.procs:
                host.reboot_when_idle = True
                host.state = host_pb2.REBOOT_WHEN_IDLE
            else:
                self.farm.sched.reboot(host)
            _touch(host)
        return host_pb2.HostRebootWhenIdleResponse()

    @rpc()
    def RestartRqdNow(
        self, request: host_pb2.HostRestartRqdNowRequest, context: Ctx
    ) -> host_pb2.HostRestartRqdNowResponse:
        with self.farm.mutate() as state:
            host_of(state, request.host)
        return host_pb2.HostRestartRqdNowResponse()

    @rpc()
    def RestartRqdWhenIdle(
        self, request: host_pb2.HostRestartRqdWhenIdleRequest, context: Ctx
    ) -> host_pb2.HostRestartRqdWhenIdleResponse:
        with self.farm.mutate() as state:
            host_of(state, request.host)
        return host_pb2.HostRestartRqdWhenIdleResponse()

    @rpc()
    def SetHardwareState(
        self, request: host_pb2.HostSetHardwareStateRequest, context: Ctx
    ) -> host_pb2.HostSetHardwareStateResponse:
        self._set(request.host, state=request.state)
        return host_pb2.HostSetHardwareStateResponse()

    @rpc()
    def SetOs(self, request: host_pb2.HostSetOsRequest, context: Ctx) -> host_pb2.HostSetOsResponse:
        self._set(request.host, os=request.os)
        return host_pb2.HostSetOsResponse()

    @rpc()
    def SetThreadMode(
        self, request: host_pb2.HostSetThreadModeRequest, context: Ctx
    ) -> host_pb2.HostSetThreadModeResponse:
        self._set(request.host, thread_mode=request.mode)
        return host_pb2.HostSetThreadModeResponse()

    @rpc()
    def SetAllocation(
        self, request: host_pb2.HostSetAllocationRequest, context: Ctx
    ) -> host_pb2.HostSetAllocationResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            alloc = state.alloc(request.allocation_id)
            host.alloc.hosts.pop(host.id, None)
            host.tags = [t for t in host.tags if t != host.alloc.tag]
            host.alloc = alloc
            alloc.hosts[host.id] = host
            host.tags.insert(0, alloc.tag)
            _touch(host)
            state.dispatch_dirty = True
        return host_pb2.HostSetAllocationResponse()

    @rpc()
    def AddTags(
        self, request: host_pb2.HostAddTagsRequest, context: Ctx
    ) -> host_pb2.HostAddTagsResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            for tag in request.tags:
                if tag not in host.tags:
                    host.tags.append(tag)
            _touch(host)
            state.dispatch_dirty = True
        return host_pb2.HostAddTagsResponse()

    @rpc()
    def RemoveTags(
        self, request: host_pb2.HostRemoveTagsRequest, context: Ctx
    ) -> host_pb2.HostRemoveTagsResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            host.tags = [t for t in host.tags if t not in set(request.tags)]
            _touch(host)
        return host_pb2.HostRemoveTagsResponse()

    @rpc()
    def RenameTag(
        self, request: host_pb2.HostRenameTagRequest, context: Ctx
    ) -> host_pb2.HostRenameTagResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            host.tags = [request.new_tag if t == request.old_tag else t for t in host.tags]
            _touch(host)
            state.dispatch_dirty = True
        return host_pb2.HostRenameTagResponse()

    @rpc()
    def Delete(
        self, request: host_pb2.HostDeleteRequest, context: Ctx
    ) -> host_pb2.HostDeleteResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            if host.procs:
                raise FarmError(
                    grpc.StatusCode.INTERNAL,
                    f"Unable to delete host {host.name}, it has running procs",
                )
            del state.hosts[host.id]
            state.hosts_by_name.pop(host.name, None)
            host.alloc.hosts.pop(host.id, None)
            if host.deed is not None:
                host.deed.owner.deeds.pop(host.deed.id, None)
                state.deeds.pop(host.deed.id, None)
        return host_pb2.HostDeleteResponse()

    @rpc()
    def RedirectToJob(
        self, request: host_pb2.HostRedirectToJobRequest, context: Ctx
    ) -> host_pb2.HostRedirectToJobResponse:
        with self.farm.mutate() as state:
            host = host_of(state, request.host)
            job = state.job(request.job_id)
            wanted = set(request.proc_names)
            hit = False
            for proc in host.procs.values():
                if not wanted or proc.name in wanted:
                    proc.redirect_target = job.name
                    hit = True
        return host_pb2.HostRedirectToJobResponse(value=hit)


class OwnerServant(Servant, host_pb2_grpc.OwnerInterfaceServicer):
    def _owner(self, msg: host_pb2.Owner) -> Owner:
        state = self.farm.state
        found = state.owners.get(msg.id)
        if found is None:
            found = next((o for o in state.owners.values() if o.name == msg.name), None)
        if found is None:
            raise Missing("owner")
        return found

    @rpc("not_found")
    def GetOwner(
        self, request: host_pb2.OwnerGetOwnerRequest, context: Ctx
    ) -> host_pb2.OwnerGetOwnerResponse:
        with self.farm.read() as state:
            owner = next((o for o in state.owners.values() if o.name == request.name), None)
            if owner is None:
                raise Missing("owner")
            msg = protos.owner(owner)
        return host_pb2.OwnerGetOwnerResponse(owner=msg)

    @rpc()
    def Delete(
        self, request: host_pb2.OwnerDeleteRequest, context: Ctx
    ) -> host_pb2.OwnerDeleteResponse:
        with self.farm.mutate() as state:
            owner = self._owner(request.owner)
            for deed in list(owner.deeds.values()):
                deed.host.deed = None
                deed.host.cache = None
                state.deeds.pop(deed.id, None)
            del state.owners[owner.id]
        return host_pb2.OwnerDeleteResponse()

    @rpc()
    def GetDeeds(
        self, request: host_pb2.OwnerGetDeedsRequest, context: Ctx
    ) -> host_pb2.OwnerGetDeedsResponse:
        with self.farm.read():
            owner = self._owner(request.owner)
            msgs = [protos.deed(d.id, d.host, owner) for d in owner.deeds.values()]
        return host_pb2.OwnerGetDeedsResponse(deeds=host_pb2.DeedSeq(deeds=msgs))

    @rpc()
    def GetHosts(
        self, request: host_pb2.OwnerGetHostsRequest, context: Ctx
    ) -> host_pb2.OwnerGetHostsResponse:
        with self.farm.read() as state:
            owner = self._owner(request.owner)
            msgs = [protos.host(d.host, state.now_int) for d in owner.deeds.values()]
        return host_pb2.OwnerGetHostsResponse(hosts=host_pb2.HostSeq(hosts=msgs))

    @rpc()
    def SetShow(
        self, request: host_pb2.OwnerSetShowRequest, context: Ctx
    ) -> host_pb2.OwnerSetShowResponse:
        with self.farm.mutate() as state:
            owner = self._owner(request.owner)
            owner.show = state.show_named(request.show)
        return host_pb2.OwnerSetShowResponse()

    @rpc()
    def TakeOwnership(
        self, request: host_pb2.OwnerTakeOwnershipRequest, context: Ctx
    ) -> host_pb2.OwnerTakeOwnershipResponse:
        with self.farm.mutate() as state:
            owner = self._owner(request.owner)
            host = state.host_named(request.host)
            take_deed(state, owner, host)
        return host_pb2.OwnerTakeOwnershipResponse()


class DeedServant(Servant, host_pb2_grpc.DeedInterfaceServicer):
    def _deed(self, msg: host_pb2.Deed) -> Deed:
        found = self.farm.state.deeds.get(msg.id)
        if not isinstance(found, Deed):
            raise Missing("deed")
        return found

    @rpc()
    def Delete(
        self, request: host_pb2.DeedDeleteRequest, context: Ctx
    ) -> host_pb2.DeedDeleteResponse:
        with self.farm.mutate() as state:
            deed = self._deed(request.deed)
            deed.owner.deeds.pop(deed.id, None)
            deed.host.deed = None
            deed.host.cache = None
            del state.deeds[deed.id]
        return host_pb2.DeedDeleteResponse()

    @rpc()
    def GetHost(
        self, request: host_pb2.DeedGetHostRequest, context: Ctx
    ) -> host_pb2.DeedGetHostResponse:
        with self.farm.read() as state:
            msg = protos.host(self._deed(request.deed).host, state.now_int)
        return host_pb2.DeedGetHostResponse(host=msg)

    @rpc()
    def GetOwner(
        self, request: host_pb2.DeedGetOwnerRequest, context: Ctx
    ) -> host_pb2.DeedGetOwnerResponse:
        with self.farm.read():
            msg = protos.owner(self._deed(request.deed).owner)
        return host_pb2.DeedGetOwnerResponse(owner=msg)


class ProcServant(Servant, host_pb2_grpc.ProcInterfaceServicer):
    def _proc(self, msg: host_pb2.Proc) -> Proc:
        return self.farm.state.proc(msg.id)

    @rpc()
    def GetProcs(
        self, request: host_pb2.ProcGetProcsRequest, context: Ctx
    ) -> host_pb2.ProcGetProcsResponse:
        with self.farm.read() as state:
            procs = match_procs(list(state.procs.values()), request.r, state.now_int)
            msgs = [protos.proc(p, state.now_int) for p in procs]
        return host_pb2.ProcGetProcsResponse(procs=host_pb2.ProcSeq(procs=msgs))

    @rpc()
    def GetFrame(
        self, request: host_pb2.ProcGetFrameRequest, context: Ctx
    ) -> host_pb2.ProcGetFrameResponse:
        with self.farm.read() as state:
            msg = protos.frame(self._proc(request.proc).frame, state.now_int)
        return host_pb2.ProcGetFrameResponse(frame=msg)

    @rpc()
    def GetHost(
        self, request: host_pb2.ProcGetHostRequest, context: Ctx
    ) -> host_pb2.ProcGetHostResponse:
        with self.farm.read() as state:
            msg = protos.host(self._proc(request.proc).host, state.now_int)
        return host_pb2.ProcGetHostResponse(host=msg)

    @rpc("not_found")
    def GetJob(
        self, request: host_pb2.ProcGetJobRequest, context: Ctx
    ) -> host_pb2.ProcGetJobResponse:
        with self.farm.read():
            msg = protos.job(self._proc(request.proc).frame.job)
        return host_pb2.ProcGetJobResponse(job=msg)

    @rpc()
    def GetLayer(
        self, request: host_pb2.ProcGetLayerRequest, context: Ctx
    ) -> host_pb2.ProcGetLayerResponse:
        with self.farm.read() as state:
            msg = protos.layer(self._proc(request.proc).frame.layer, state)
        return host_pb2.ProcGetLayerResponse(layer=msg)

    @rpc()
    def Kill(self, request: host_pb2.ProcKillRequest, context: Ctx) -> host_pb2.ProcKillResponse:
        with self.farm.mutate():
            self.farm.sched.stop(self._proc(request.proc))
        return host_pb2.ProcKillResponse()

    @rpc()
    def Unbook(
        self, request: host_pb2.ProcUnbookRequest, context: Ctx
    ) -> host_pb2.ProcUnbookResponse:
        with self.farm.mutate():
            self.farm.sched.stop(self._proc(request.proc))
        return host_pb2.ProcUnbookResponse()

    @rpc()
    def UnbookProcs(
        self, request: host_pb2.ProcUnbookProcsRequest, context: Ctx
    ) -> host_pb2.ProcUnbookProcsResponse:
        with self.farm.mutate() as state:
            procs = match_procs(list(state.procs.values()), request.r, state.now_int)
            for proc in procs:
                self.farm.sched.stop(proc)
        return host_pb2.ProcUnbookProcsResponse(num_procs=len(procs))

    @rpc()
    def UnbookToJob(
        self, request: host_pb2.ProcUnbookToJobRequest, context: Ctx
    ) -> host_pb2.ProcUnbookToJobResponse:
        with self.farm.mutate() as state:
            targets = [job_of(state, j) for j in request.jobs.jobs]
            procs = match_procs(list(state.procs.values()), request.r, state.now_int)
            for proc in procs:
                if targets:
                    proc.redirect_target = targets[0].name
                self.farm.sched.stop(proc)
        return host_pb2.ProcUnbookToJobResponse(num_procs=len(procs))

    @rpc()
    def UnbookToGroup(
        self, request: host_pb2.ProcUnbookToGroupRequest, context: Ctx
    ) -> host_pb2.ProcUnbookToGroupResponse:
        with self.farm.mutate() as state:
            group = state.group(request.group.id)
            procs = match_procs(list(state.procs.values()), request.r, state.now_int)
            for proc in procs:
                proc.redirect_target = group.name
                self.farm.sched.stop(proc)
        return host_pb2.ProcUnbookToGroupResponse(num_procs=len(procs))

    @rpc()
    def RedirectToJob(
        self, request: host_pb2.ProcRedirectToJobRequest, context: Ctx
    ) -> host_pb2.ProcRedirectToJobResponse:
        with self.farm.mutate() as state:
            proc = self._proc(request.proc)
            proc.redirect_target = state.job(request.job_id).name
            if request.kill:
                self.farm.sched.stop(proc)
        return host_pb2.ProcRedirectToJobResponse(value=True)

    @rpc()
    def RedirectToGroup(
        self, request: host_pb2.ProcRedirectToGroupRequest, context: Ctx
    ) -> host_pb2.ProcRedirectToGroupResponse:
        with self.farm.mutate() as state:
            proc = self._proc(request.proc)
            proc.redirect_target = state.group(request.group_id).name
            if request.kill:
                self.farm.sched.stop(proc)
        return host_pb2.ProcRedirectToGroupResponse(value=True)

    @rpc()
    def ClearRedirect(
        self, request: host_pb2.ProcClearRedirectRequest, context: Ctx
    ) -> host_pb2.ProcClearRedirectResponse:
        with self.farm.mutate():
            proc = self._proc(request.proc)
            had = bool(proc.redirect_target)
            proc.redirect_target = ""
        return host_pb2.ProcClearRedirectResponse(value=had)
