"""The small management services: comments, depends, limits, subscriptions,
departments and tasks."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from opencue_proto import (
    comment_pb2,
    comment_pb2_grpc,
    department_pb2,
    department_pb2_grpc,
    depend_pb2,
    depend_pb2_grpc,
    limit_pb2,
    limit_pb2_grpc,
    subscription_pb2,
    subscription_pb2_grpc,
    task_pb2,
    task_pb2_grpc,
)

from opencue_sandbox import protos
from opencue_sandbox.errors import FarmError, Missing
from opencue_sandbox.model import Comment, Department, Depend, Limit, Subscription, Task
from opencue_sandbox.servicers.base import Servant, rpc

Ctx: TypeAlias = grpc.ServicerContext


class CommentServant(Servant, comment_pb2_grpc.CommentInterfaceServicer):
    """Cuebot's ManageComment catches nothing, so unknown ids answer INTERNAL."""

    def _comment(self, msg: comment_pb2.Comment) -> Comment:
        found = self.farm.state.comments.get(msg.id)
        if found is None:
            raise Missing("comment")
        return found

    def _touch_owner(self, comment: Comment) -> None:
        state = self.farm.state
        if comment.owner_kind == "job" and comment.owner_id in state.jobs:
            state.touch_job(state.jobs[comment.owner_id])
        elif comment.owner_id in state.hosts:
            state.hosts[comment.owner_id].cache = None

    @rpc()
    def Save(
        self, request: comment_pb2.CommentSaveRequest, context: Ctx
    ) -> comment_pb2.CommentSaveResponse:
        with self.farm.mutate():
            comment = self._comment(request.comment)
            comment.subject = request.comment.subject
            comment.message = request.comment.message
            if request.comment.user:
                comment.user = request.comment.user
        return comment_pb2.CommentSaveResponse()

    @rpc()
    def Delete(
        self, request: comment_pb2.CommentDeleteRequest, context: Ctx
    ) -> comment_pb2.CommentDeleteResponse:
        with self.farm.mutate() as state:
            comment = self._comment(request.comment)
            del state.comments[comment.id]
            if comment.owner_kind == "job" and comment.owner_id in state.jobs:
                owner = state.jobs[comment.owner_id].comments
            elif comment.owner_id in state.hosts:
                owner = state.hosts[comment.owner_id].comments
            else:
                owner = []
            if comment in owner:
                owner.remove(comment)
            self._touch_owner(comment)
        return comment_pb2.CommentDeleteResponse()


class DependServant(Servant, depend_pb2_grpc.DependInterfaceServicer):
    def _depend(self, id_: str) -> Depend:
        found = self.farm.state.depends.get(id_)
        if found is None:
            raise Missing("depend")
        return found

    @rpc("not_found")
    def GetDepend(
        self, request: depend_pb2.DependGetDependRequest, context: Ctx
    ) -> depend_pb2.DependGetDependResponse:
        with self.farm.read():
            msg = protos.depend(self._depend(request.id))
        return depend_pb2.DependGetDependResponse(depend=msg)

    @rpc()
    def Satisfy(
        self, request: depend_pb2.DependSatisfyRequest, context: Ctx
    ) -> depend_pb2.DependSatisfyResponse:
        with self.farm.mutate():
            self.farm.deps.satisfy(self._depend(request.depend.id))
        return depend_pb2.DependSatisfyResponse()

    @rpc()
    def Unsatisfy(
        self, request: depend_pb2.DependUnsatisfyRequest, context: Ctx
    ) -> depend_pb2.DependUnsatisfyResponse:
        with self.farm.mutate():
            self.farm.deps.unsatisfy(self._depend(request.depend.id))
        return depend_pb2.DependUnsatisfyResponse()


class LimitServant(Servant, limit_pb2_grpc.LimitInterfaceServicer):
    """Cuebot's ManageLimit does not catch lookups either: unknown names are INTERNAL."""

    def _named(self, name: str) -> Limit:
        for lim in self.farm.state.limits.values():
            if lim.name == name:
                return lim
        raise Missing("limit")

    @rpc()
    def Create(
        self, request: limit_pb2.LimitCreateRequest, context: Ctx
    ) -> limit_pb2.LimitCreateResponse:
        with self.farm.mutate() as state:
            if any(lim.name == request.name for lim in state.limits.values()):
                raise FarmError(
                    grpc.StatusCode.INTERNAL, f"A limit named {request.name} already exists"
                )
            lim = Limit(
                state.new_id(),
                request.name,
                request.max_value,
                request.type,
                request.enforcement,
                request.soft_value,
                request.exit_status,
                request.delay_minutes,
                request.auto_tag,
            )
            state.limits[lim.id] = lim
            msg = protos.limit(lim, state)
        return limit_pb2.LimitCreateResponse(limit=msg)

    @rpc()
    def Delete(
        self, request: limit_pb2.LimitDeleteRequest, context: Ctx
    ) -> limit_pb2.LimitDeleteResponse:
        with self.farm.mutate() as state:
            lim = self._named(request.name)
            del state.limits[lim.id]
            for layer in state.layers.values():
                if lim.id in layer.limits:
                    layer.limits.remove(lim.id)
                    layer.cache = None
            state.recount_limits()
        return limit_pb2.LimitDeleteResponse()

    @rpc()
    def Find(
        self, request: limit_pb2.LimitFindRequest, context: Ctx
    ) -> limit_pb2.LimitFindResponse:
        with self.farm.read() as state:
            msg = protos.limit(self._named(request.name), state)
        return limit_pb2.LimitFindResponse(limit=msg)

    @rpc()
    def Get(self, request: limit_pb2.LimitGetRequest, context: Ctx) -> limit_pb2.LimitGetResponse:
        with self.farm.read() as state:
            lim = state.limits.get(request.id)
            if lim is None:
                raise Missing("limit")
            msg = protos.limit(lim, state)
        return limit_pb2.LimitGetResponse(limit=msg)

    @rpc()
    def GetAll(
        self, request: limit_pb2.LimitGetAllRequest, context: Ctx
    ) -> limit_pb2.LimitGetAllResponse:
        with self.farm.read() as state:
            limits = sorted(state.limits.values(), key=lambda lim: lim.name)
            msgs = [protos.limit(lim, state) for lim in limits]
        return limit_pb2.LimitGetAllResponse(limits=msgs)

    def _set(self, limit_name: str, /, **values: object) -> None:
        with self.farm.mutate() as state:
            lim = self._named(limit_name)
            for key, value in values.items():
                setattr(lim, key, value)
            for layer in state.layers.values():
                if lim.id in layer.limits:
                    layer.cache = None
            # A raised maximum or a relaxed enforcement may let waiting frames book.
            state.dispatch_dirty = True

    @rpc()
    def Rename(
        self, request: limit_pb2.LimitRenameRequest, context: Ctx
    ) -> limit_pb2.LimitRenameResponse:
        self._set(request.old_name, name=request.new_name)
        return limit_pb2.LimitRenameResponse()

    @rpc()
    def SetMaxValue(
        self, request: limit_pb2.LimitSetMaxValueRequest, context: Ctx
    ) -> limit_pb2.LimitSetMaxValueResponse:
        self._set(request.name, max_value=request.max_value)
        return limit_pb2.LimitSetMaxValueResponse()

    @rpc()
    def SetType(
        self, request: limit_pb2.LimitSetTypeRequest, context: Ctx
    ) -> limit_pb2.LimitSetTypeResponse:
        self._set(request.name, type=request.type)
        return limit_pb2.LimitSetTypeResponse()

    @rpc()
    def SetEnforcement(
        self, request: limit_pb2.LimitSetEnforcementRequest, context: Ctx
    ) -> limit_pb2.LimitSetEnforcementResponse:
        self._set(request.name, enforcement=request.enforcement)
        return limit_pb2.LimitSetEnforcementResponse()

    @rpc()
    def SetSoftValue(
        self, request: limit_pb2.LimitSetSoftValueRequest, context: Ctx
    ) -> limit_pb2.LimitSetSoftValueResponse:
        self._set(request.name, soft_value=request.soft_value)
        return limit_pb2.LimitSetSoftValueResponse()

    @rpc()
    def SetReportTtl(
        self, request: limit_pb2.LimitSetReportTtlRequest, context: Ctx
    ) -> limit_pb2.LimitSetReportTtlResponse:
        self._set(request.name, report_ttl=request.report_ttl)
        return limit_pb2.LimitSetReportTtlResponse()

    @rpc()
    def SetFailureRule(
        self, request: limit_pb2.LimitSetFailureRuleRequest, context: Ctx
    ) -> limit_pb2.LimitSetFailureRuleResponse:
        self._set(
            request.name,
            exit_status=request.exit_status,
            delay_minutes=request.delay_minutes,
            auto_tag=request.auto_tag,
        )
        return limit_pb2.LimitSetFailureRuleResponse()

    @rpc()
    def GetBindings(
        self, request: limit_pb2.LimitGetBindingsRequest, context: Ctx
    ) -> limit_pb2.LimitGetBindingsResponse:
        with self.farm.read() as state:
            lim = self._named(request.limit_name)
            wanted = set(request.layer_ids)
            sources = set(request.sources)
            bindings = [
                limit_pb2.LimitBinding(
                    limit_id=lim.id,
                    layer_id=layer.id,
                    layer_name=layer.name,
                    job_name=layer.job.name,
                    services=layer.services,
                    source=limit_pb2.SPEC,
                    create_time=layer.job.start_time,
                )
                for layer in state.layers.values()
                if lim.id in layer.limits and (not wanted or layer.id in wanted)
            ]
            if sources:
                bindings = [b for b in bindings if b.source in sources]
        return limit_pb2.LimitGetBindingsResponse(bindings=bindings)

    @rpc()
    def ClearBindings(
        self, request: limit_pb2.LimitClearBindingsRequest, context: Ctx
    ) -> limit_pb2.LimitClearBindingsResponse:
        with self.farm.mutate() as state:
            lim = self._named(request.limit_name)
            removed = 0
            if not request.sources or limit_pb2.SPEC in request.sources:
                for layer in state.layers.values():
                    if lim.id in layer.limits:
                        layer.limits.remove(lim.id)
                        layer.cache = None
                        removed += 1
                state.recount_limits()
        return limit_pb2.LimitClearBindingsResponse(removed=removed)

    @rpc()
    def GetHolds(
        self, request: limit_pb2.LimitGetHoldsRequest, context: Ctx
    ) -> limit_pb2.LimitGetHoldsResponse:
        # The simulated farm has no external license holders, so there are never holds.
        with self.farm.read():
            self._named(request.limit_name)
        return limit_pb2.LimitGetHoldsResponse(holds=[])


class SubscriptionServant(Servant, subscription_pb2_grpc.SubscriptionInterfaceServicer):
    def _sub(self, msg: subscription_pb2.Subscription) -> Subscription:
        state = self.farm.state
        found = state.subscriptions.get(msg.id)
        if found is None:
            found = next((s for s in state.subscriptions.values() if s.name == msg.name), None)
        if found is None:
            raise Missing("subscription")
        return found

    @rpc("not_found")
    def Find(
        self, request: subscription_pb2.SubscriptionFindRequest, context: Ctx
    ) -> subscription_pb2.SubscriptionFindResponse:
        with self.farm.read() as state:
            sub = next((s for s in state.subscriptions.values() if s.name == request.name), None)
            if sub is None:
                raise Missing("subscription")
            msg = protos.subscription(sub)
        return subscription_pb2.SubscriptionFindResponse(subscription=msg)

    @rpc("not_found")
    def Get(
        self, request: subscription_pb2.SubscriptionGetRequest, context: Ctx
    ) -> subscription_pb2.SubscriptionGetResponse:
        with self.farm.read() as state:
            sub = state.subscriptions.get(request.id)
            if sub is None:
                raise Missing("subscription")
            msg = protos.subscription(sub)
        return subscription_pb2.SubscriptionGetResponse(subscription=msg)

    @rpc()
    def Delete(
        self, request: subscription_pb2.SubscriptionDeleteRequest, context: Ctx
    ) -> subscription_pb2.SubscriptionDeleteResponse:
        with self.farm.mutate() as state:
            del state.subscriptions[self._sub(request.subscription).id]
        return subscription_pb2.SubscriptionDeleteResponse()

    @rpc()
    def SetSize(
        self, request: subscription_pb2.SubscriptionSetSizeRequest, context: Ctx
    ) -> subscription_pb2.SubscriptionSetSizeResponse:
        with self.farm.mutate() as state:
            self._sub(request.subscription).size = request.new_size
            state.dispatch_dirty = True
        return subscription_pb2.SubscriptionSetSizeResponse()

    @rpc()
    def SetBurst(
        self, request: subscription_pb2.SubscriptionSetBurstRequest, context: Ctx
    ) -> subscription_pb2.SubscriptionSetBurstResponse:
        with self.farm.mutate() as state:
            self._sub(request.subscription).burst = request.burst
            state.dispatch_dirty = True
        return subscription_pb2.SubscriptionSetBurstResponse()


class DepartmentServant(Servant, department_pb2_grpc.DepartmentInterfaceServicer):
    """Cuebot's ManageDepartment has no Delete; that one stays UNIMPLEMENTED."""

    def _dept(self, msg: department_pb2.Department) -> Department:
        state = self.farm.state
        found = state.departments.get(msg.id)
        if found is None:
            found = next(
                (d for d in state.departments.values() if msg.name in (d.name, d.dept)), None
            )
        if found is None:
            raise Missing("department")
        return found

    def _add(self, dept: Department, shot: str, cores: float) -> Task:
        state = self.farm.state
        task = dept.tasks.get(shot)
        if task is None:
            task = Task(state.new_id(), dept, shot, cores)
            dept.tasks[shot] = task
            state.tasks[task.id] = task
        else:
            task.min_cores = cores
        return task

    @rpc()
    def GetDepartmentNames(
        self, request: department_pb2.DeptGetDepartmentNamesRequest, context: Ctx
    ) -> department_pb2.DeptGetDepartmentNamesResponse:
        with self.farm.read() as state:
            names = sorted(state.dept_names)
        return department_pb2.DeptGetDepartmentNamesResponse(names=names)

    @rpc()
    def AddDepartmentName(
        self, request: department_pb2.DeptAddDeptNameRequest, context: Ctx
    ) -> department_pb2.DeptAddDeptNameResponse:
        with self.farm.mutate() as state:
            if request.name not in state.dept_names:
                state.dept_names.append(request.name)
        return department_pb2.DeptAddDeptNameResponse()

    @rpc()
    def RemoveDepartmentName(
        self, request: department_pb2.DeptRemoveDepartmentNameRequest, context: Ctx
    ) -> department_pb2.DeptRemoveDepartmentNameResponse:
        with self.farm.mutate() as state:
            if request.name in state.dept_names:
                state.dept_names.remove(request.name)
        return department_pb2.DeptRemoveDepartmentNameResponse()

    @rpc()
    def GetTasks(
        self, request: department_pb2.DeptGetTasksRequest, context: Ctx
    ) -> department_pb2.DeptGetTasksResponse:
        with self.farm.read():
            dept = self._dept(request.department)
            msgs = [protos.task(t) for _, t in sorted(dept.tasks.items())]
        return department_pb2.DeptGetTasksResponse(tasks=task_pb2.TaskSeq(tasks=msgs))

    @rpc()
    def AddTask(
        self, request: department_pb2.DeptAddTaskRequest, context: Ctx
    ) -> department_pb2.DeptAddTaskResponse:
        with self.farm.mutate():
            task = self._add(self._dept(request.department), request.shot, request.min_cores)
            msg = protos.task(task)
        return department_pb2.DeptAddTaskResponse(task=msg)

    @rpc()
    def AddTasks(
        self, request: department_pb2.DeptAddTasksRequest, context: Ctx
    ) -> department_pb2.DeptAddTasksResponse:
        with self.farm.mutate():
            dept = self._dept(request.department)
            tasks = [self._add(dept, shot, cores) for shot, cores in sorted(request.tmap.items())]
            msgs = [protos.task(t) for t in tasks]
        return department_pb2.DeptAddTasksResponse(tasks=task_pb2.TaskSeq(tasks=msgs))

    @rpc()
    def ReplaceTasks(
        self, request: department_pb2.DeptReplaceTaskRequest, context: Ctx
    ) -> department_pb2.DeptReplaceTaskResponse:
        with self.farm.mutate() as state:
            dept = self._dept(request.department)
            for task in dept.tasks.values():
                state.tasks.pop(task.id, None)
            dept.tasks.clear()
            tasks = [self._add(dept, shot, cores) for shot, cores in sorted(request.tmap.items())]
            msgs = [protos.task(t) for t in tasks]
        return department_pb2.DeptReplaceTaskResponse(tasks=task_pb2.TaskSeq(tasks=msgs))

    @rpc()
    def ClearTasks(
        self, request: department_pb2.DeptClearTasksRequest, context: Ctx
    ) -> department_pb2.DeptClearTasksResponse:
        with self.farm.mutate() as state:
            dept = self._dept(request.department)
            for task in dept.tasks.values():
                state.tasks.pop(task.id, None)
            dept.tasks.clear()
        return department_pb2.DeptClearTasksResponse()

    @rpc()
    def ClearTaskAdjustments(
        self, request: department_pb2.DeptClearTaskAdjustmentsRequest, context: Ctx
    ) -> department_pb2.DeptClearTaskAdjustmentsResponse:
        with self.farm.mutate():
            for task in self._dept(request.department).tasks.values():
                task.adjust_cores = 0.0
        return department_pb2.DeptClearTaskAdjustmentsResponse()

    @rpc()
    def EnableTiManaged(
        self, request: department_pb2.DeptEnableTiManagedRequest, context: Ctx
    ) -> department_pb2.DeptEnableTiManagedResponse:
        with self.farm.mutate():
            dept = self._dept(request.department)
            dept.ti_managed = True
            dept.ti_task = request.ti_task
            dept.min_cores = request.managed_cores
        return department_pb2.DeptEnableTiManagedResponse()

    @rpc()
    def DisableTiManaged(
        self, request: department_pb2.DeptDisableTiManagedRequest, context: Ctx
    ) -> department_pb2.DeptDisableTiManagedResponse:
        with self.farm.mutate():
            dept = self._dept(request.department)
            dept.ti_managed = False
            dept.ti_task = ""
        return department_pb2.DeptDisableTiManagedResponse()

    @rpc()
    def SetManagedCores(
        self, request: department_pb2.DeptSetManagedCoresRequest, context: Ctx
    ) -> department_pb2.DeptSetManagedCoresResponse:
        with self.farm.mutate():
            self._dept(request.department).min_cores = request.managed_cores
        return department_pb2.DeptSetManagedCoresResponse()


class TaskServant(Servant, task_pb2_grpc.TaskInterfaceServicer):
    """Cuebot's ManageTask catches nothing: unknown tasks answer INTERNAL."""

    def _task(self, msg: task_pb2.Task) -> Task:
        found = self.farm.state.tasks.get(msg.id)
        if found is None:
            raise Missing("task")
        return found

    @rpc()
    def SetMinCores(
        self, request: task_pb2.TaskSetMinCoresRequest, context: Ctx
    ) -> task_pb2.TaskSetMinCoresResponse:
        with self.farm.mutate():
            self._task(request.task).min_cores = request.new_min_cores
        return task_pb2.TaskSetMinCoresResponse()

    @rpc()
    def ClearAdjustments(
        self, request: task_pb2.TaskClearAdjustmentsRequest, context: Ctx
    ) -> task_pb2.TaskClearAdjustmentsResponse:
        with self.farm.mutate():
            self._task(request.task).adjust_cores = 0.0
        return task_pb2.TaskClearAdjustmentsResponse()

    @rpc()
    def Delete(
        self, request: task_pb2.TaskDeleteRequest, context: Ctx
    ) -> task_pb2.TaskDeleteResponse:
        with self.farm.mutate() as state:
            task = self._task(request.task)
            task.department.tasks.pop(task.shot, None)
            del state.tasks[task.id]
        return task_pb2.TaskDeleteResponse()
