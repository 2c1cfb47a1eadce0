"""cue.CueInterface: the system stats pycue uses as its connection test."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import cue_pb2, cue_pb2_grpc

from opencue_sandbox.servicers.base import Servant, rpc

Ctx: TypeAlias = grpc.ServicerContext


class CueServant(Servant, cue_pb2_grpc.CueInterfaceServicer):
    @rpc()
    def GetSystemStats(
        self, request: cue_pb2.CueGetSystemStatsRequest, context: Ctx
    ) -> cue_pb2.CueGetSystemStatsResponse:
        with self.farm.read() as state:
            sched = self.farm.sched
            waiting = sum(j.counts[0] for j in state.active_jobs.values())
            stats = cue_pb2.SystemStats(
                dispatch_waiting=waiting,
                dispatch_threads=1,
                dispatch_executed=sched.booked_procs,
                booking_threads=1,
                booking_executed=sched.booked_procs,
                booked_procs=sched.booked_procs,
                unbooked_procs=sched.unbooked_procs,
                manage_threads=self.farm.config.max_workers,
                report_threads=1,
            )
        return cue_pb2.CueGetSystemStatsResponse(stats=stats)
