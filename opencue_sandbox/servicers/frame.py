"""job.FrameInterface: single-frame operations and depends."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import depend_pb2, job_pb2, job_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.errors import Missing, internal
from opencue_sandbox.model import Frame
from opencue_sandbox.search import select_frames
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.job import depend_seq
from opencue_sandbox.servicers.partition import add_partition
from opencue_sandbox.servicers.refs import all_frames, frame_of, job_of, layer_of

Ctx: TypeAlias = grpc.ServicerContext


class FrameServant(Servant, job_pb2_grpc.FrameInterfaceServicer):
    @rpc("not_found")
    def GetFrame(
        self, request: job_pb2.FrameGetFrameRequest, context: Ctx
    ) -> job_pb2.FrameGetFrameResponse:
        with self.farm.read() as state:
            msg = protos.frame(state.frame(request.id), state.now_int)
        return job_pb2.FrameGetFrameResponse(frame=msg)

    @rpc("not_found")
    def FindFrame(
        self, request: job_pb2.FrameFindFrameRequest, context: Ctx
    ) -> job_pb2.FrameFindFrameResponse:
        with self.farm.read() as state:
            job = state.job_named(request.job)
            for layer in job.layers:
                if layer.name != request.layer:
                    continue
                for frame in layer.frames:
                    if frame.number == request.frame:
                        msg = protos.frame(frame, state.now_int)
                        return job_pb2.FrameFindFrameResponse(frame=msg)
        raise Missing("frame")

    @rpc()
    def GetFrames(
        self, request: job_pb2.FrameGetFramesRequest, context: Ctx
    ) -> job_pb2.FrameGetFramesResponse:
        with self.farm.read() as state:
            job = state.jobs.get(request.job) or state.jobs_by_name.get(request.job)
            if job is None:
                raise Missing("job")
            frames = select_frames(
                all_frames(job), request.r, state.now_int, self.farm.config.frame_page_cap
            )
            msgs = [protos.frame(f, state.now_int) for f in frames]
        return job_pb2.FrameGetFramesResponse(frames=job_pb2.FrameSeq(frames=msgs))

    def _frame(self, msg: job_pb2.Frame) -> Frame:
        frame = frame_of(self.farm.state, msg)
        self.farm.check_writable(frame.job)
        return frame

    @rpc()
    def Retry(self, request: job_pb2.FrameRetryRequest, context: Ctx) -> job_pb2.FrameRetryResponse:
        with self.farm.mutate():
            self.farm.retry(self._frame(request.frame))
        return job_pb2.FrameRetryResponse()

    @rpc()
    def Kill(self, request: job_pb2.FrameKillRequest, context: Ctx) -> job_pb2.FrameKillResponse:
        with self.farm.mutate():
            self.farm.kill(self._frame(request.frame))
        return job_pb2.FrameKillResponse()

    @rpc()
    def Eat(self, request: job_pb2.FrameEatRequest, context: Ctx) -> job_pb2.FrameEatResponse:
        with self.farm.mutate():
            self.farm.eat(self._frame(request.frame))
        return job_pb2.FrameEatResponse()

    @rpc()
    def MarkAsWaiting(
        self, request: job_pb2.FrameMarkAsWaitingRequest, context: Ctx
    ) -> job_pb2.FrameMarkAsWaitingResponse:
        with self.farm.mutate():
            self.farm.mark_waiting(self._frame(request.frame))
        return job_pb2.FrameMarkAsWaitingResponse()

    @rpc()
    def MarkAsDepend(
        self, request: job_pb2.FrameMarkAsDependRequest, context: Ctx
    ) -> job_pb2.FrameMarkAsDependResponse:
        with self.farm.mutate():
            self.farm.mark_depend(self._frame(request.frame))
        return job_pb2.FrameMarkAsDependResponse()

    @rpc()
    def SetCheckpointState(
        self, request: job_pb2.FrameSetCheckpointStateRequest, context: Ctx
    ) -> job_pb2.FrameSetCheckpointStateResponse:
        with self.farm.mutate() as state:
            frame = self._frame(request.frame)
            frame.checkpoint_state = request.state
            state.touch_frame(frame)
        return job_pb2.FrameSetCheckpointStateResponse()

    @rpc()
    def GetFrameStateDisplayOverrides(
        self, request: job_pb2.GetFrameStateDisplayOverridesRequest, context: Ctx
    ) -> job_pb2.GetFrameStateDisplayOverridesResponse:
        with self.farm.read() as state:
            frame = frame_of(state, request.frame)
            overrides = state.display_overrides.get(frame.id)
            if not overrides:
                raise internal("No Frame State display overrides found.")
            seq = job_pb2.FrameStateDisplayOverrideSeq(overrides=list(overrides.values()))
        return job_pb2.GetFrameStateDisplayOverridesResponse(overrides=seq)

    @rpc()
    def SetFrameStateDisplayOverride(
        self, request: job_pb2.FrameStateDisplayOverrideRequest, context: Ctx
    ) -> job_pb2.FrameStateDisplayOverrideResponse:
        with self.farm.mutate() as state:
            frame = frame_of(state, request.frame)
            per_state = state.display_overrides.setdefault(frame.id, {})
            per_state[request.override.state] = request.override
        return job_pb2.FrameStateDisplayOverrideResponse()

    @rpc()
    def AddRenderPartition(
        self, request: job_pb2.FrameAddRenderPartitionRequest, context: Ctx
    ) -> job_pb2.FrameAddRenderPartitionResponse:
        with self.farm.mutate():
            frame = self._frame(request.frame)
            msg = add_partition(self.farm, request, job=frame.job, layer=frame.layer, frame=frame)
        return job_pb2.FrameAddRenderPartitionResponse(render_partition=msg)

    # ---- depends ---------------------------------------------------------------------------
    @rpc()
    def CreateDependencyOnFrame(
        self, request: job_pb2.FrameCreateDependencyOnFrameRequest, context: Ctx
    ) -> job_pb2.FrameCreateDependencyOnFrameResponse:
        with self.farm.mutate() as state:
            frame = self._frame(request.frame)
            on = frame_of(state, request.depend_on_frame)
            dep = self.farm.deps.create(
                depend_pb2.FRAME_ON_FRAME,
                frame.job,
                on.job,
                er_layer=frame.layer,
                er_frame=frame,
                on_layer=on.layer,
                on_frame=on,
            )
            msg = protos.depend(dep)
        return job_pb2.FrameCreateDependencyOnFrameResponse(depend=msg)

    @rpc()
    def CreateDependencyOnJob(
        self, request: job_pb2.FrameCreateDependencyOnJobRequest, context: Ctx
    ) -> job_pb2.FrameCreateDependencyOnJobResponse:
        with self.farm.mutate() as state:
            frame = self._frame(request.frame)
            on = job_of(state, request.job)
            dep = self.farm.deps.create(
                depend_pb2.FRAME_ON_JOB, frame.job, on, er_layer=frame.layer, er_frame=frame
            )
            msg = protos.depend(dep)
        return job_pb2.FrameCreateDependencyOnJobResponse(depend=msg)

    @rpc()
    def CreateDependencyOnLayer(
        self, request: job_pb2.FrameCreateDependencyOnLayerRequest, context: Ctx
    ) -> job_pb2.FrameCreateDependencyOnLayerResponse:
        with self.farm.mutate() as state:
            frame = self._frame(request.frame)
            on = layer_of(state, request.layer)
            dep = self.farm.deps.create(
                depend_pb2.FRAME_ON_LAYER,
                frame.job,
                on.job,
                er_layer=frame.layer,
                er_frame=frame,
                on_layer=on,
            )
            msg = protos.depend(dep)
        return job_pb2.FrameCreateDependencyOnLayerResponse(depend=msg)

    @rpc()
    def DropDepends(
        self, request: job_pb2.FrameDropDependsRequest, context: Ctx
    ) -> job_pb2.FrameDropDependsResponse:
        with self.farm.mutate():
            frame = self._frame(request.frame)
            self.farm.deps.drop(frame.id, "frame", request.target)
        return job_pb2.FrameDropDependsResponse()

    @rpc()
    def GetWhatDependsOnThis(
        self, request: job_pb2.FrameGetWhatDependsOnThisRequest, context: Ctx
    ) -> job_pb2.FrameGetWhatDependsOnThisResponse:
        with self.farm.read() as state:
            frame = frame_of(state, request.frame)
            seq = depend_seq(self.farm.deps.what_depends_on_this(frame.id, "frame"))
        return job_pb2.FrameGetWhatDependsOnThisResponse(depends=seq)

    @rpc()
    def GetWhatThisDependsOn(
        self, request: job_pb2.FrameGetWhatThisDependsOnRequest, context: Ctx
    ) -> job_pb2.FrameGetWhatThisDependsOnResponse:
        with self.farm.read() as state:
            frame = frame_of(state, request.frame)
            seq = depend_seq(self.farm.deps.what_this_depends_on(frame.id, "frame"))
        return job_pb2.FrameGetWhatThisDependsOnResponse(depends=seq)
