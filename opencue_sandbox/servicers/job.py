"""job.JobInterface: job queries, job-level frame operations, depends, launching."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import comment_pb2, depend_pb2, job_pb2, job_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.filters import run_filters
from opencue_sandbox.jobspec import launch_spec
from opencue_sandbox.model import Comment, Depend, Frame, Job
from opencue_sandbox.search import filter_frames, match_jobs, parse_frame_range, select_frames
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.partition import add_partition
from opencue_sandbox.servicers.refs import all_frames, frame_of, job_of, layer_of

Ctx: TypeAlias = grpc.ServicerContext


def depend_seq(depends: list[Depend]) -> depend_pb2.DependSeq:
    return depend_pb2.DependSeq(depends=[protos.depend(d) for d in depends])


class JobServant(Servant, job_pb2_grpc.JobInterfaceServicer):
    # ---- queries -----------------------------------------------------------------------
    @rpc("not_found")
    def FindJob(
        self, request: job_pb2.JobFindJobRequest, context: Ctx
    ) -> job_pb2.JobFindJobResponse:
        with self.farm.read() as state:
            msg = protos.job(state.job_named(request.name))
        return job_pb2.JobFindJobResponse(job=msg)

    @rpc("not_found")
    def GetJob(self, request: job_pb2.JobGetJobRequest, context: Ctx) -> job_pb2.JobGetJobResponse:
        with self.farm.read() as state:
            msg = protos.job(state.job(request.id))
        return job_pb2.JobGetJobResponse(job=msg)

    @rpc()
    def GetJobs(
        self, request: job_pb2.JobGetJobsRequest, context: Ctx
    ) -> job_pb2.JobGetJobsResponse:
        r = request.r
        with self.farm.read() as state:
            if r.ids and not (r.jobs or r.regex or r.substr or r.users or r.shots or r.shows):
                pool = [state.jobs[i] for i in dict.fromkeys(r.ids) if i in state.jobs]
            else:
                pool = list(
                    state.jobs.values() if r.include_finished else state.active_jobs.values()
                )
            msgs = [protos.job(j) for j in match_jobs(pool, r)]
        return job_pb2.JobGetJobsResponse(jobs=job_pb2.JobSeq(jobs=msgs))

    @rpc()
    def GetJobNames(
        self, request: job_pb2.JobGetJobNamesRequest, context: Ctx
    ) -> job_pb2.JobGetJobNamesResponse:
        with self.farm.read() as state:
            names = [j.name for j in match_jobs(list(state.jobs.values()), request.r)]
        return job_pb2.JobGetJobNamesResponse(names=names)

    @rpc()
    def IsJobPending(
        self, request: job_pb2.JobIsJobPendingRequest, context: Ctx
    ) -> job_pb2.JobIsJobPendingResponse:
        with self.farm.read() as state:
            job = state.jobs_by_name.get(request.name)
            pending = job is not None and not job.finished
        return job_pb2.JobIsJobPendingResponse(value=pending)

    @rpc("job")
    def GetCurrent(
        self, request: job_pb2.JobGetCurrentRequest, context: Ctx
    ) -> job_pb2.JobGetCurrentResponse:
        with self.farm.read() as state:
            msg = protos.job(job_of(state, request.job))
        return job_pb2.JobGetCurrentResponse(job=msg)

    @rpc("job")
    def GetFrames(
        self, request: job_pb2.JobGetFramesRequest, context: Ctx
    ) -> job_pb2.JobGetFramesResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            frames = select_frames(
                all_frames(job), request.req, state.now_int, self.farm.config.frame_page_cap
            )
            msgs = [protos.frame(f, state.now_int) for f in frames]
        return job_pb2.JobGetFramesResponse(frames=job_pb2.FrameSeq(frames=msgs))

    @rpc("job")
    def GetLayers(
        self, request: job_pb2.JobGetLayersRequest, context: Ctx
    ) -> job_pb2.JobGetLayersResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            msgs = [protos.layer(la, state) for la in job.layers]
        return job_pb2.JobGetLayersResponse(layers=job_pb2.LayerSeq(layers=msgs))

    @rpc("job")
    def GetUpdatedFrames(
        self, request: job_pb2.JobGetUpdatedFramesRequest, context: Ctx
    ) -> job_pb2.JobGetUpdatedFramesResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            wanted = {la.id for la in request.layer_filter.layers}
            since = request.last_check
            frames = [
                f
                for f in all_frames(job)
                if (not wanted or f.layer.id in wanted) and f.updated_time >= since
            ]
            updated = [protos.updated_frame(f) for f in frames]
            result = job_pb2.JobGetUpdatedFramesResponse(
                state=job.state,
                server_time=state.now_int,
                updated_frames=job_pb2.UpdatedFrameSeq(updated_frames=updated),
            )
        return result

    @rpc("job")
    def GetComments(
        self, request: job_pb2.JobGetCommentsRequest, context: Ctx
    ) -> job_pb2.JobGetCommentsResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            msgs = [protos.comment(c) for c in job.comments]
        return job_pb2.JobGetCommentsResponse(comments=comment_pb2.CommentSeq(comments=msgs))

    @rpc("job")
    def GetDepends(
        self, request: job_pb2.JobGetDependsRequest, context: Ctx
    ) -> job_pb2.JobGetDependsResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            seq = depend_seq(self.farm.deps.all_for_job(job))
        return job_pb2.JobGetDependsResponse(depends=seq)

    @rpc("job")
    def GetWhatDependsOnThis(
        self, request: job_pb2.JobGetWhatDependsOnThisRequest, context: Ctx
    ) -> job_pb2.JobGetWhatDependsOnThisResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            seq = depend_seq(self.farm.deps.what_depends_on_this(job.id, "job"))
        return job_pb2.JobGetWhatDependsOnThisResponse(depends=seq)

    @rpc("job")
    def GetWhatThisDependsOn(
        self, request: job_pb2.JobGetWhatThisDependsOnRequest, context: Ctx
    ) -> job_pb2.JobGetWhatThisDependsOnResponse:
        with self.farm.read() as state:
            job = job_of(state, request.job)
            seq = depend_seq(self.farm.deps.what_this_depends_on(job.id, "job"))
        return job_pb2.JobGetWhatThisDependsOnResponse(depends=seq)

    # ---- lifecycle -----------------------------------------------------------------------
    @rpc("job")
    def Kill(self, request: job_pb2.JobKillRequest, context: Ctx) -> job_pb2.JobKillResponse:
        with self.farm.mutate() as state:
            self.farm.finish_job(job_of(state, request.job))
        return job_pb2.JobKillResponse()

    @rpc("job")
    def Pause(self, request: job_pb2.JobPauseRequest, context: Ctx) -> job_pb2.JobPauseResponse:
        with self.farm.mutate() as state:
            self.farm.pause(job_of(state, request.job), True)
        return job_pb2.JobPauseResponse()

    @rpc("job")
    def Resume(self, request: job_pb2.JobResumeRequest, context: Ctx) -> job_pb2.JobResumeResponse:
        with self.farm.mutate() as state:
            self.farm.pause(job_of(state, request.job), False)
        return job_pb2.JobResumeResponse()

    @rpc("job")
    def ShutdownIfCompleted(
        self, request: job_pb2.JobShutdownIfCompletedRequest, context: Ctx
    ) -> job_pb2.JobShutdownIfCompletedResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            if (
                job.counts[job_pb2.WAITING]
                + job.counts[job_pb2.RUNNING]
                + job.counts[job_pb2.DEPEND]
                == 0
            ):
                self.farm.finish_job(job)
        return job_pb2.JobShutdownIfCompletedResponse()

    def _set(self, job_msg: job_pb2.Job, readonly: bool, **values: object) -> None:
        with self.farm.mutate() as state:
            job = job_of(state, job_msg)
            if readonly:
                self.farm.check_writable(job)
            for key, value in values.items():
                setattr(job, key, value)
            state.touch_job(job)
            state.dispatch_dirty = True
            state.order_dirty = True

    @rpc("job")
    def SetMaxCores(
        self, request: job_pb2.JobSetMaxCoresRequest, context: Ctx
    ) -> job_pb2.JobSetMaxCoresResponse:
        self._set(request.job, True, max_cores=request.val)
        return job_pb2.JobSetMaxCoresResponse()

    @rpc("job")
    def SetMinCores(
        self, request: job_pb2.JobSetMinCoresRequest, context: Ctx
    ) -> job_pb2.JobSetMinCoresResponse:
        self._set(request.job, False, min_cores=request.val)
        return job_pb2.JobSetMinCoresResponse()

    @rpc("job")
    def SetMaxGpus(
        self, request: job_pb2.JobSetMaxGpusRequest, context: Ctx
    ) -> job_pb2.JobSetMaxGpusResponse:
        self._set(request.job, False, max_gpus=float(request.val))
        return job_pb2.JobSetMaxGpusResponse()

    @rpc("job")
    def SetMinGpus(
        self, request: job_pb2.JobSetMinGpusRequest, context: Ctx
    ) -> job_pb2.JobSetMinGpusResponse:
        self._set(request.job, False, min_gpus=float(request.val))
        return job_pb2.JobSetMinGpusResponse()

    @rpc("job")
    def SetPriority(
        self, request: job_pb2.JobSetPriorityRequest, context: Ctx
    ) -> job_pb2.JobSetPriorityResponse:
        self._set(request.job, True, priority=request.val)
        return job_pb2.JobSetPriorityResponse()

    @rpc("job")
    def SetMaxRetries(
        self, request: job_pb2.JobSetMaxRetriesRequest, context: Ctx
    ) -> job_pb2.JobSetMaxRetriesResponse:
        self._set(request.job, True, max_retries=request.max_retries)
        return job_pb2.JobSetMaxRetriesResponse()

    @rpc("job")
    def SetAutoEat(
        self, request: job_pb2.JobSetAutoEatRequest, context: Ctx
    ) -> job_pb2.JobSetAutoEatResponse:
        self._set(request.job, True, auto_eat=request.value)
        if request.value:
            with self.farm.mutate() as state:
                job = job_of(state, request.job)
                for frame in all_frames(job):
                    if frame.state == job_pb2.DEAD:
                        self.farm.eat(frame)
        return job_pb2.JobSetAutoEatResponse()

    @rpc("job")
    def SetGroup(
        self, request: job_pb2.JobSetGroupRequest, context: Ctx
    ) -> job_pb2.JobSetGroupResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            self.farm.move_job(job, state.group(request.group_id))
        return job_pb2.JobSetGroupResponse()

    @rpc("job")
    def AddComment(
        self, request: job_pb2.JobAddCommentRequest, context: Ctx
    ) -> job_pb2.JobAddCommentResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            c = request.new_comment
            comment = Comment(
                state.new_id(), state.now_int, c.user, c.subject, c.message, "job", job.id
            )
            job.comments.append(comment)
            state.comments[comment.id] = comment
            state.touch_job(job)
        return job_pb2.JobAddCommentResponse()

    @rpc("job")
    def AddSubscriber(
        self, request: job_pb2.JobAddSubscriberRequest, context: Ctx
    ) -> job_pb2.JobAddSubscriberResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            subscribers = {s for s in job.email.split(",") if s}
            subscribers.add(request.subscriber)
            job.email = ",".join(sorted(subscribers))
        return job_pb2.JobAddSubscriberResponse()

    @rpc("job")
    def RunFilters(
        self, request: job_pb2.JobRunFiltersRequest, context: Ctx
    ) -> job_pb2.JobRunFiltersResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            run_filters(self.farm, job)
        return job_pb2.JobRunFiltersResponse()

    @rpc("job")
    def AddRenderPartition(
        self, request: job_pb2.JobAddRenderPartRequest, context: Ctx
    ) -> job_pb2.JobAddRenderPartResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            msg = add_partition(self.farm, request, job=job)
        return job_pb2.JobAddRenderPartResponse(render_partition=msg)

    # ---- frames by criteria ----------------------------------------------------------------
    def _frames(
        self, job_msg: job_pb2.Job, req: job_pb2.FrameSearchCriteria
    ) -> tuple[Job, list[Frame]]:
        state = self.farm.state
        job = job_of(state, job_msg)
        self.farm.check_writable(job)
        return job, filter_frames(all_frames(job), req, state.now_int)

    @rpc("job")
    def RetryFrames(
        self, request: job_pb2.JobRetryFramesRequest, context: Ctx
    ) -> job_pb2.JobRetryFramesResponse:
        with self.farm.mutate():
            _, frames = self._frames(request.job, request.req)
            for frame in frames:
                self.farm.retry(frame)
        return job_pb2.JobRetryFramesResponse()

    @rpc("job")
    def KillFrames(
        self, request: job_pb2.JobKillFramesRequest, context: Ctx
    ) -> job_pb2.JobKillFramesResponse:
        with self.farm.mutate():
            _, frames = self._frames(request.job, request.req)
            for frame in frames:
                self.farm.kill(frame)
        return job_pb2.JobKillFramesResponse()

    @rpc("job")
    def EatFrames(
        self, request: job_pb2.JobEatFramesRequest, context: Ctx
    ) -> job_pb2.JobEatFramesResponse:
        with self.farm.mutate():
            _, frames = self._frames(request.job, request.req)
            for frame in frames:
                self.farm.eat(frame)
        return job_pb2.JobEatFramesResponse()

    @rpc("job")
    def MarkDoneFrames(
        self, request: job_pb2.JobMarkDoneFramesRequest, context: Ctx
    ) -> job_pb2.JobMarkDoneFramesResponse:
        with self.farm.mutate():
            _, frames = self._frames(request.job, request.req)
            self.farm.mark_done(frames)
        return job_pb2.JobMarkDoneFramesResponse()

    @rpc("job")
    def MarkAsWaiting(
        self, request: job_pb2.JobMarkAsWaitingRequest, context: Ctx
    ) -> job_pb2.JobMarkAsWaitingResponse:
        with self.farm.mutate():
            _, frames = self._frames(request.job, request.req)
            for frame in frames:
                self.farm.mark_waiting(frame)
        return job_pb2.JobMarkAsWaitingResponse()

    @rpc("job")
    def ReorderFrames(
        self, request: job_pb2.JobReorderFramesRequest, context: Ctx
    ) -> job_pb2.JobReorderFramesResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            wanted = set(parse_frame_range(request.range))
            self.farm.reorder([f for f in all_frames(job) if f.number in wanted], request.order)
        return job_pb2.JobReorderFramesResponse()

    @rpc("job")
    def StaggerFrames(
        self, request: job_pb2.JobStaggerFramesRequest, context: Ctx
    ) -> job_pb2.JobStaggerFramesResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            wanted = set(parse_frame_range(request.range))
            self.farm.stagger([f for f in all_frames(job) if f.number in wanted], request.stagger)
        return job_pb2.JobStaggerFramesResponse()

    # ---- depends -------------------------------------------------------------------------
    @rpc("job")
    def CreateDependencyOnJob(
        self, request: job_pb2.JobCreateDependencyOnJobRequest, context: Ctx
    ) -> job_pb2.JobCreateDependencyOnJobResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            on = job_of(state, request.on_job)
            dep = self.farm.deps.create(depend_pb2.JOB_ON_JOB, job, on)
            msg = protos.depend(dep)
        return job_pb2.JobCreateDependencyOnJobResponse(depend=msg)

    @rpc("job")
    def CreateDependencyOnLayer(
        self, request: job_pb2.JobCreateDependencyOnLayerRequest, context: Ctx
    ) -> job_pb2.JobCreateDependencyOnLayerResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            on = layer_of(state, request.layer)
            dep = self.farm.deps.create(depend_pb2.JOB_ON_LAYER, job, on.job, on_layer=on)
            msg = protos.depend(dep)
        return job_pb2.JobCreateDependencyOnLayerResponse(depend=msg)

    @rpc("job")
    def CreateDependencyOnFrame(
        self, request: job_pb2.JobCreateDependencyOnFrameRequest, context: Ctx
    ) -> job_pb2.JobCreateDependencyOnFrameResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            on = frame_of(state, request.frame)
            dep = self.farm.deps.create(
                depend_pb2.JOB_ON_FRAME, job, on.job, on_layer=on.layer, on_frame=on
            )
            msg = protos.depend(dep)
        return job_pb2.JobCreateDependencyOnFrameResponse(depend=msg)

    @rpc("job")
    def DropDepends(
        self, request: job_pb2.JobDropDependsRequest, context: Ctx
    ) -> job_pb2.JobDropDependsResponse:
        with self.farm.mutate() as state:
            job = job_of(state, request.job)
            self.farm.check_writable(job)
            self.farm.deps.drop(job.id, "job", request.target)
        return job_pb2.JobDropDependsResponse()

    # ---- launching -----------------------------------------------------------------------
    @rpc()
    def LaunchSpec(
        self, request: job_pb2.JobLaunchSpecRequest, context: Ctx
    ) -> job_pb2.JobLaunchSpecResponse:
        jobs = launch_spec(self.farm, request.spec, "Failed to add job to launch queue: ")
        return job_pb2.JobLaunchSpecResponse(names=[j.name for j in jobs])

    @rpc()
    def LaunchSpecAndWait(
        self, request: job_pb2.JobLaunchSpecAndWaitRequest, context: Ctx
    ) -> job_pb2.JobLaunchSpecAndWaitResponse:
        with self.farm.lock:
            jobs = launch_spec(self.farm, request.spec, "Failed to launch and add job: ")
            msgs = [protos.job(j) for j in jobs]
        return job_pb2.JobLaunchSpecAndWaitResponse(jobs=job_pb2.JobSeq(jobs=msgs))
