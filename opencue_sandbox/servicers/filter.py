"""filter.FilterInterface, MatcherInterface and ActionInterface."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import filter_pb2, filter_pb2_grpc

from opencue_sandbox import protos
from opencue_sandbox.errors import Missing
from opencue_sandbox.filters import run_filters
from opencue_sandbox.model import Action, Filter, Matcher
from opencue_sandbox.servicers.base import Servant, rpc
from opencue_sandbox.servicers.refs import group_of, job_of

Ctx: TypeAlias = grpc.ServicerContext


def _renumber(filters: list[Filter]) -> None:
    for index, flt in enumerate(sorted(filters, key=lambda f: f.order), start=1):
        flt.order = float(index)


class FilterServant(Servant, filter_pb2_grpc.FilterInterfaceServicer):
    def _filter(self, msg: filter_pb2.Filter) -> Filter:
        found = self.farm.state.filters.get(msg.id)
        if found is None:
            raise Missing("filter")
        return found

    @rpc("not_found")
    def FindFilter(
        self, request: filter_pb2.FilterFindFilterRequest, context: Ctx
    ) -> filter_pb2.FilterFindFilterResponse:
        with self.farm.read() as state:
            show = state.show_named(request.show)
            for flt in show.filters:
                if flt.name == request.name:
                    return filter_pb2.FilterFindFilterResponse(filter=protos.filter_(flt))
        raise Missing("filter")

    @rpc()
    def GetActions(
        self, request: filter_pb2.FilterGetActionsRequest, context: Ctx
    ) -> filter_pb2.FilterGetActionsResponse:
        with self.farm.read():
            msgs = [protos.action(a) for a in self._filter(request.filter).actions]
        return filter_pb2.FilterGetActionsResponse(actions=filter_pb2.ActionSeq(actions=msgs))

    @rpc()
    def GetMatchers(
        self, request: filter_pb2.FilterGetMatchersRequest, context: Ctx
    ) -> filter_pb2.FilterGetMatchersResponse:
        with self.farm.read():
            msgs = [protos.matcher(m) for m in self._filter(request.filter).matchers]
        return filter_pb2.FilterGetMatchersResponse(matchers=filter_pb2.MatcherSeq(matchers=msgs))

    @rpc()
    def CreateAction(
        self, request: filter_pb2.FilterCreateActionRequest, context: Ctx
    ) -> filter_pb2.FilterCreateActionResponse:
        with self.farm.mutate() as state:
            flt = self._filter(request.filter)
            d = request.data
            action = Action(
                state.new_id(),
                flt,
                d.type,
                d.value_type,
                d.group_value,
                d.string_value,
                d.integer_value,
                d.float_value,
                d.boolean_value,
            )
            flt.actions.append(action)
            state.actions[action.id] = action
            msg = protos.action(action)
        return filter_pb2.FilterCreateActionResponse(action=msg)

    @rpc()
    def CreateMatcher(
        self, request: filter_pb2.FilterCreateMatcherRequest, context: Ctx
    ) -> filter_pb2.FilterCreateMatcherResponse:
        with self.farm.mutate() as state:
            flt = self._filter(request.filter)
            d = request.data
            matcher = Matcher(state.new_id(), flt, d.subject, d.type, d.input)
            flt.matchers.append(matcher)
            state.matchers[matcher.id] = matcher
            msg = protos.matcher(matcher)
        return filter_pb2.FilterCreateMatcherResponse(matcher=msg)

    @rpc()
    def Delete(
        self, request: filter_pb2.FilterDeleteRequest, context: Ctx
    ) -> filter_pb2.FilterDeleteResponse:
        with self.farm.mutate() as state:
            flt = self._filter(request.filter)
            flt.show.filters.remove(flt)
            del state.filters[flt.id]
            for m in flt.matchers:
                state.matchers.pop(m.id, None)
            for a in flt.actions:
                state.actions.pop(a.id, None)
            _renumber(flt.show.filters)
        return filter_pb2.FilterDeleteResponse()

    def _move(self, msg: filter_pb2.Filter, position: float) -> None:
        with self.farm.mutate():
            flt = self._filter(msg)
            flt.order = position
            _renumber(flt.show.filters)

    @rpc()
    def RaiseOrder(
        self, request: filter_pb2.FilterRaiseOrderRequest, context: Ctx
    ) -> filter_pb2.FilterRaiseOrderResponse:
        with self.farm.read():
            order = self._filter(request.filter).order
        self._move(request.filter, order - 1.5)
        return filter_pb2.FilterRaiseOrderResponse()

    @rpc()
    def LowerOrder(
        self, request: filter_pb2.FilterLowerOrderRequest, context: Ctx
    ) -> filter_pb2.FilterLowerOrderResponse:
        with self.farm.read():
            order = self._filter(request.filter).order
        self._move(request.filter, order + 1.5)
        return filter_pb2.FilterLowerOrderResponse()

    @rpc()
    def OrderFirst(
        self, request: filter_pb2.FilterOrderFirstRequest, context: Ctx
    ) -> filter_pb2.FilterOrderFirstResponse:
        self._move(request.filter, -1.0)
        return filter_pb2.FilterOrderFirstResponse()

    @rpc()
    def OrderLast(
        self, request: filter_pb2.FilterOrderLastRequest, context: Ctx
    ) -> filter_pb2.FilterOrderLastResponse:
        self._move(request.filter, 1e9)
        return filter_pb2.FilterOrderLastResponse()

    @rpc()
    def SetOrder(
        self, request: filter_pb2.FilterSetOrderRequest, context: Ctx
    ) -> filter_pb2.FilterSetOrderResponse:
        self._move(request.filter, request.order - 0.5)
        return filter_pb2.FilterSetOrderResponse()

    @rpc()
    def SetEnabled(
        self, request: filter_pb2.FilterSetEnabledRequest, context: Ctx
    ) -> filter_pb2.FilterSetEnabledResponse:
        with self.farm.mutate():
            self._filter(request.filter).enabled = request.enabled
        return filter_pb2.FilterSetEnabledResponse()

    @rpc()
    def SetName(
        self, request: filter_pb2.FilterSetNameRequest, context: Ctx
    ) -> filter_pb2.FilterSetNameResponse:
        with self.farm.mutate():
            self._filter(request.filter).name = request.name
        return filter_pb2.FilterSetNameResponse()

    @rpc()
    def SetType(
        self, request: filter_pb2.FilterSetTypeRequest, context: Ctx
    ) -> filter_pb2.FilterSetTypeResponse:
        with self.farm.mutate():
            self._filter(request.filter).type = request.type
        return filter_pb2.FilterSetTypeResponse()

    @rpc()
    def RunFilterOnJobs(
        self, request: filter_pb2.FilterRunFilterOnJobsRequest, context: Ctx
    ) -> filter_pb2.FilterRunFilterOnJobsResponse:
        with self.farm.mutate() as state:
            flt = self._filter(request.filter)
            for msg in request.jobs.jobs:
                run_filters(self.farm, job_of(state, msg), only=flt)
        return filter_pb2.FilterRunFilterOnJobsResponse()

    @rpc()
    def RunFilterOnGroup(
        self, request: filter_pb2.FilterRunFilterOnGroupRequest, context: Ctx
    ) -> filter_pb2.FilterRunFilterOnGroupResponse:
        with self.farm.mutate() as state:
            flt = self._filter(request.filter)
            for job in list(group_of(state, request.group).jobs.values()):
                if not job.finished:
                    run_filters(self.farm, job, only=flt)
        return filter_pb2.FilterRunFilterOnGroupResponse()


class MatcherServant(Servant, filter_pb2_grpc.MatcherInterfaceServicer):
    def _matcher(self, msg: filter_pb2.Matcher) -> Matcher:
        found = self.farm.state.matchers.get(msg.id)
        if found is None:
            raise Missing("matcher")
        return found

    @rpc()
    def Commit(
        self, request: filter_pb2.MatcherCommitRequest, context: Ctx
    ) -> filter_pb2.MatcherCommitResponse:
        with self.farm.mutate():
            m = self._matcher(request.matcher)
            m.subject = request.matcher.subject
            m.type = request.matcher.type
            m.input = request.matcher.input
        return filter_pb2.MatcherCommitResponse()

    @rpc()
    def Delete(
        self, request: filter_pb2.MatcherDeleteRequest, context: Ctx
    ) -> filter_pb2.MatcherDeleteResponse:
        with self.farm.mutate() as state:
            m = self._matcher(request.matcher)
            m.filter.matchers.remove(m)
            del state.matchers[m.id]
        return filter_pb2.MatcherDeleteResponse()

    @rpc()
    def GetParentFilter(
        self, request: filter_pb2.MatcherGetParentFilterRequest, context: Ctx
    ) -> filter_pb2.MatcherGetParentFilterResponse:
        with self.farm.read():
            msg = protos.filter_(self._matcher(request.matcher).filter)
        return filter_pb2.MatcherGetParentFilterResponse(filter=msg)


class ActionServant(Servant, filter_pb2_grpc.ActionInterfaceServicer):
    def _action(self, msg: filter_pb2.Action) -> Action:
        found = self.farm.state.actions.get(msg.id)
        if found is None:
            raise Missing("action")
        return found

    @rpc()
    def Commit(
        self, request: filter_pb2.ActionCommitRequest, context: Ctx
    ) -> filter_pb2.ActionCommitResponse:
        with self.farm.mutate():
            a = self._action(request.action)
            d = request.action
            a.type, a.value_type = d.type, d.value_type
            a.group_value, a.string_value = d.group_value, d.string_value
            a.integer_value, a.float_value = d.integer_value, d.float_value
            a.boolean_value = d.boolean_value
        return filter_pb2.ActionCommitResponse()

    @rpc()
    def Delete(
        self, request: filter_pb2.ActionDeleteRequest, context: Ctx
    ) -> filter_pb2.ActionDeleteResponse:
        with self.farm.mutate() as state:
            a = self._action(request.action)
            a.filter.actions.remove(a)
            del state.actions[a.id]
        return filter_pb2.ActionDeleteResponse()

    @rpc()
    def GetParentFilter(
        self, request: filter_pb2.ActionGetParentFilterRequest, context: Ctx
    ) -> filter_pb2.ActionGetParentFilterResponse:
        with self.farm.read():
            msg = protos.filter_(self._action(request.action).filter)
        return filter_pb2.ActionGetParentFilterResponse(filter=msg)
