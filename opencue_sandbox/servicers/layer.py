"""job.LayerInterface: layer settings, layer-wide frame operations and depends."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import depend_pb2, job_pb2, job_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.errors import Missing, invalid
from opencue_sandbox.model import Layer
from opencue_sandbox.search import parse_frame_range, select_frames
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.job import depend_seq
from opencue_sandbox.servicers.partition import add_partition
from opencue_sandbox.servicers.refs import frame_of, job_of, layer_of

Ctx: TypeAlias = grpc.ServicerContext


class LayerServant(Servant, job_pb2_grpc.LayerInterfaceServicer):
    @rpc("not_found")
    def FindLayer(
        self, request: job_pb2.LayerFindLayerRequest, context: Ctx
    ) -> job_pb2.LayerFindLayerResponse:
        with self.farm.read() as state:
            job = state.job_named(request.job)
            for layer in job.layers:
                if layer.name == request.layer:
                    return job_pb2.LayerFindLayerResponse(layer=protos.layer(layer, state))
        raise Missing("layer")

    @rpc("not_found")
    def GetLayer(
        self, request: job_pb2.LayerGetLayerRequest, context: Ctx
    ) -> job_pb2.LayerGetLayerResponse:
        with self.farm.read() as state:
            msg = protos.layer(state.layer(request.id), state)
        return job_pb2.LayerGetLayerResponse(layer=msg)

    @rpc()
    def GetFrames(
        self, request: job_pb2.LayerGetFramesRequest, context: Ctx
    ) -> job_pb2.LayerGetFramesResponse:
        with self.farm.read() as state:
            layer = layer_of(state, request.layer)
            frames = select_frames(
                layer.frames, request.s, state.now_int, self.farm.config.frame_page_cap
            )
            msgs = [protos.frame(f, state.now_int) for f in frames]
        return job_pb2.LayerGetFramesResponse(frames=job_pb2.FrameSeq(frames=msgs))

    @rpc()
    def GetOutputPaths(
        self, request: job_pb2.LayerGetOutputPathsRequest, context: Ctx
    ) -> job_pb2.LayerGetOutputPathsResponse:
        with self.farm.read() as state:
            paths = list(layer_of(state, request.layer).output_paths)
        return job_pb2.LayerGetOutputPathsResponse(output_paths=paths)

    @rpc()
    def RegisterOutputPath(
        self, request: job_pb2.LayerRegisterOutputPathRequest, context: Ctx
    ) -> job_pb2.LayerRegisterOutputPathResponse:
        with self.farm.mutate() as state:
            layer_of(state, request.layer).output_paths.append(request.spec)
        return job_pb2.LayerRegisterOutputPathResponse()

    @rpc()
    def GetLimits(
        self, request: job_pb2.LayerGetLimitsRequest, context: Ctx
    ) -> job_pb2.LayerGetLimitsResponse:
        with self.farm.read() as state:
            layer = layer_of(state, request.layer)
            msgs = [protos.limit(state.limits[i], state) for i in layer.limits if i in state.limits]
        return job_pb2.LayerGetLimitsResponse(limits=msgs)

    @rpc()
    def AddLimit(
        self, request: job_pb2.LayerAddLimitRequest, context: Ctx
    ) -> job_pb2.LayerAddLimitResponse:
        with self.farm.mutate() as state:
            layer = layer_of(state, request.layer)
            if request.limit_id not in state.limits:
                raise Missing("limit")
            if request.limit_id not in layer.limits:
                layer.limits.append(request.limit_id)
                layer.cache = None
                state.recount_limits()
        return job_pb2.LayerAddLimitResponse()

    @rpc()
    def DropLimit(
        self, request: job_pb2.LayerDropLimitRequest, context: Ctx
    ) -> job_pb2.LayerDropLimitResponse:
        with self.farm.mutate() as state:
            layer = layer_of(state, request.layer)
            if request.limit_id in layer.limits:
                layer.limits.remove(request.limit_id)
                layer.cache = None
                state.recount_limits()
        return job_pb2.LayerDropLimitResponse()

    # ---- settings --------------------------------------------------------------------------
    def _set(self, layer_msg: job_pb2.Layer, **values: object) -> Layer:
        with self.farm.mutate() as state:
            layer = layer_of(state, layer_msg)
            self.farm.check_writable(layer.job)
            for key, value in values.items():
                setattr(layer, key, value)
            layer.cache = None
            state.touch_job(layer.job)
            state.dispatch_dirty = True
            state.reindex()
        return layer

    @rpc()
    def SetMinCores(
        self, request: job_pb2.LayerSetMinCoresRequest, context: Ctx
    ) -> job_pb2.LayerSetMinCoresResponse:
        self._set(request.layer, min_cores=request.cores)
        return job_pb2.LayerSetMinCoresResponse()

    @rpc()
    def SetMaxCores(
        self, request: job_pb2.LayerSetMaxCoresRequest, context: Ctx
    ) -> job_pb2.LayerSetMaxCoresResponse:
        self._set(request.layer, max_cores=request.cores)
        return job_pb2.LayerSetMaxCoresResponse()

    @rpc()
    def SetMinGpus(
        self, request: job_pb2.LayerSetMinGpusRequest, context: Ctx
    ) -> job_pb2.LayerSetMinGpusResponse:
        self._set(request.layer, min_gpus=float(request.min_gpus))
        return job_pb2.LayerSetMinGpusResponse()

    @rpc()
    def SetMaxGpus(
        self, request: job_pb2.LayerSetMaxGpusRequest, context: Ctx
    ) -> job_pb2.LayerSetMaxGpusResponse:
        self._set(request.layer, max_gpus=float(request.max_gpus))
        return job_pb2.LayerSetMaxGpusResponse()

    @rpc()
    def SetMinGpuMemory(
        self, request: job_pb2.LayerSetMinGpuMemoryRequest, context: Ctx
    ) -> job_pb2.LayerSetMinGpuMemoryResponse:
        self._set(request.layer, min_gpu_memory=request.gpu_memory)
        return job_pb2.LayerSetMinGpuMemoryResponse()

    @rpc()
    def SetMinMemory(
        self, request: job_pb2.LayerSetMinMemoryRequest, context: Ctx
    ) -> job_pb2.LayerSetMinMemoryResponse:
        self._set(request.layer, min_memory=request.memory)
        return job_pb2.LayerSetMinMemoryResponse()

    @rpc()
    def SetTags(
        self, request: job_pb2.LayerSetTagsRequest, context: Ctx
    ) -> job_pb2.LayerSetTagsResponse:
        self._set(request.layer, tags=list(request.tags))
        return job_pb2.LayerSetTagsResponse()

    @rpc()
    def SetThreadable(
        self, request: job_pb2.LayerSetThreadableRequest, context: Ctx
    ) -> job_pb2.LayerSetThreadableResponse:
        self._set(request.layer, threadable=request.threadable)
        return job_pb2.LayerSetThreadableResponse()

    @rpc()
    def SetTimeout(
        self, request: job_pb2.LayerSetTimeoutRequest, context: Ctx
    ) -> job_pb2.LayerSetTimeoutResponse:
        self._set(request.layer, timeout=request.timeout)
        return job_pb2.LayerSetTimeoutResponse()

    @rpc()
    def SetTimeoutLLU(
        self, request: job_pb2.LayerSetTimeoutLLURequest, context: Ctx
    ) -> job_pb2.LayerSetTimeoutLLUResponse:
        self._set(request.layer, timeout_llu=request.timeout_llu)
        return job_pb2.LayerSetTimeoutLLUResponse()

    @rpc()
    def EnableMemoryOptimizer(
        self, request: job_pb2.LayerEnableMemoryOptimizerRequest, context: Ctx
    ) -> job_pb2.LayerEnableMemoryOptimizerResponse:
        self._set(request.layer, memory_optimizer=request.value)
        return job_pb2.LayerEnableMemoryOptimizerResponse()

    @rpc()
    def SetStartAfter(
        self, request: job_pb2.LayerSetStartAfterRequest, context: Ctx
    ) -> job_pb2.LayerSetStartAfterResponse:
        if request.start_after < 0:
            raise invalid("start_after must be a non-negative epoch time")
        reason = f"set by {request.username}" if request.username else ""
        self._set(request.layer, start_after=request.start_after, start_after_reason=reason)
        return job_pb2.LayerSetStartAfterResponse()

    @rpc()
    def SetDispatchOrder(
        self, request: job_pb2.LayerSetDispatchOrderRequest, context: Ctx
    ) -> job_pb2.LayerSetDispatchOrderResponse:
        with self.farm.mutate() as state:
            layer = layer_of(state, request.layer)
            self.farm.check_writable(layer.job)
            layers = layer.job.layers
            layers.remove(layer)
            layers.insert(max(0, min(len(layers), request.order)), layer)
            for index, la in enumerate(layers):
                la.index = index
                la.cache = None
            state.touch_job(layer.job)
            state.dispatch_dirty = True
        return job_pb2.LayerSetDispatchOrderResponse()

    # ---- frames ----------------------------------------------------------------------------
    def _frames(self, layer_msg: job_pb2.Layer) -> Layer:
        layer = layer_of(self.farm.state, layer_msg)
        self.farm.check_writable(layer.job)
        return layer

    @rpc()
    def RetryFrames(
        self, request: job_pb2.LayerRetryFramesRequest, context: Ctx
    ) -> job_pb2.LayerRetryFramesResponse:
        with self.farm.mutate():
            for frame in list(self._frames(request.layer).frames):
                self.farm.retry(frame)
        return job_pb2.LayerRetryFramesResponse()

    @rpc()
    def KillFrames(
        self, request: job_pb2.LayerKillFramesRequest, context: Ctx
    ) -> job_pb2.LayerKillFramesResponse:
        with self.farm.mutate():
            for frame in list(self._frames(request.layer).frames):
                self.farm.kill(frame)
        return job_pb2.LayerKillFramesResponse()

    @rpc()
    def EatFrames(
        self, request: job_pb2.LayerEatFramesRequest, context: Ctx
    ) -> job_pb2.LayerEatFramesResponse:
        with self.farm.mutate():
            for frame in list(self._frames(request.layer).frames):
                self.farm.eat(frame)
        return job_pb2.LayerEatFramesResponse()

    @rpc()
    def MarkdoneFrames(
        self, request: job_pb2.LayerMarkdoneFramesRequest, context: Ctx
    ) -> job_pb2.LayerMarkdoneFramesResponse:
        with self.farm.mutate():
            self.farm.mark_done(list(self._frames(request.layer).frames))
        return job_pb2.LayerMarkdoneFramesResponse()

    @rpc()
    def ReorderFrames(
        self, request: job_pb2.LayerReorderFramesRequest, context: Ctx
    ) -> job_pb2.LayerReorderFramesResponse:
        with self.farm.mutate():
            layer = self._frames(request.layer)
            wanted = set(parse_frame_range(request.range))
            self.farm.reorder([f for f in layer.frames if f.number in wanted], request.order)
        return job_pb2.LayerReorderFramesResponse()

    @rpc()
    def StaggerFrames(
        self, request: job_pb2.LayerStaggerFramesRequest, context: Ctx
    ) -> job_pb2.LayerStaggerFramesResponse:
        with self.farm.mutate():
            layer = self._frames(request.layer)
            wanted = set(parse_frame_range(request.range))
            self.farm.stagger([f for f in layer.frames if f.number in wanted], request.stagger)
        return job_pb2.LayerStaggerFramesResponse()

    @rpc()
    def AddRenderPartition(
        self, request: job_pb2.LayerAddRenderPartitionRequest, context: Ctx
    ) -> job_pb2.LayerAddRenderPartitionResponse:
        with self.farm.mutate():
            layer = self._frames(request.layer)
            msg = add_partition(self.farm, request, job=layer.job, layer=layer)
        return job_pb2.LayerAddRenderPartitionResponse(render_partition=msg)

    # ---- depends ---------------------------------------------------------------------------
    @rpc()
    def CreateDependencyOnJob(
        self, request: job_pb2.LayerCreateDependOnJobRequest, context: Ctx
    ) -> job_pb2.LayerCreateDependOnJobResponse:
        with self.farm.mutate() as state:
            layer = self._frames(request.layer)
            on = job_of(state, request.job)
            dep = self.farm.deps.create(depend_pb2.LAYER_ON_JOB, layer.job, on, er_layer=layer)
            msg = protos.depend(dep)
        return job_pb2.LayerCreateDependOnJobResponse(depend=msg)

    @rpc()
    def CreateDependencyOnLayer(
        self, request: job_pb2.LayerCreateDependOnLayerRequest, context: Ctx
    ) -> job_pb2.LayerCreateDependOnLayerResponse:
        with self.farm.mutate() as state:
            layer = self._frames(request.layer)
            on = layer_of(state, request.depend_on_layer)
            dep = self.farm.deps.create(
                depend_pb2.LAYER_ON_LAYER, layer.job, on.job, er_layer=layer, on_layer=on
            )
            msg = protos.depend(dep)
        return job_pb2.LayerCreateDependOnLayerResponse(depend=msg)

    @rpc()
    def CreateDependencyOnFrame(
        self, request: job_pb2.LayerCreateDependOnFrameRequest, context: Ctx
    ) -> job_pb2.LayerCreateDependOnFrameResponse:
        with self.farm.mutate() as state:
            layer = self._frames(request.layer)
            on = frame_of(state, request.frame)
            dep = self.farm.deps.create(
                depend_pb2.LAYER_ON_FRAME,
                layer.job,
                on.job,
                er_layer=layer,
                on_layer=on.layer,
                on_frame=on,
            )
            msg = protos.depend(dep)
        return job_pb2.LayerCreateDependOnFrameResponse(depend=msg)

    @rpc()
    def CreateFrameByFrameDependency(
        self, request: job_pb2.LayerCreateFrameByFrameDependRequest, context: Ctx
    ) -> job_pb2.LayerCreateFrameByFrameDependResponse:
        with self.farm.mutate() as state:
            layer = self._frames(request.layer)
            on = layer_of(state, request.depend_layer)
            dep = self.farm.deps.create(
                depend_pb2.FRAME_BY_FRAME,
                layer.job,
                on.job,
                er_layer=layer,
                on_layer=on,
                any_frame=request.any_frame,
            )
            msg = protos.depend(dep)
        return job_pb2.LayerCreateFrameByFrameDependResponse(depend=msg)

    @rpc()
    def DropDepends(
        self, request: job_pb2.LayerDropDependsRequest, context: Ctx
    ) -> job_pb2.LayerDropDependsResponse:
        with self.farm.mutate():
            layer = self._frames(request.layer)
            self.farm.deps.drop(layer.id, "layer", request.target)
        return job_pb2.LayerDropDependsResponse()

    @rpc()
    def GetWhatDependsOnThis(
        self, request: job_pb2.LayerGetWhatDependsOnThisRequest, context: Ctx
    ) -> job_pb2.LayerGetWhatDependsOnThisResponse:
        with self.farm.read() as state:
            layer = layer_of(state, request.layer)
            seq = depend_seq(self.farm.deps.what_depends_on_this(layer.id, "layer"))
        return job_pb2.LayerGetWhatDependsOnThisResponse(depends=seq)

    @rpc()
    def GetWhatThisDependsOn(
        self, request: job_pb2.LayerGetWhatThisDependsOnRequest, context: Ctx
    ) -> job_pb2.LayerGetWhatThisDependsOnResponse:
        with self.farm.read() as state:
            layer = layer_of(state, request.layer)
            seq = depend_seq(self.farm.deps.what_this_depends_on(layer.id, "layer"))
        return job_pb2.LayerGetWhatThisDependsOnResponse(depends=seq)
