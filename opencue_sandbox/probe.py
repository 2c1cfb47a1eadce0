"""Plausible requests for any Cuebot RPC, built from the demo farm's own entities.

Used by the tests (every RPC answers with its declared type) and by the benchmark; it
fills each request field that names an entity with a real one of the ``testing`` show.
"""

from __future__ import annotations

import importlib
from typing import Any

from google.protobuf import message as pb_message
from opencue_proto import (
    comment_pb2,
    department_pb2,
    depend_pb2,
    facility_pb2,
    filter_pb2,
    host_pb2,
    job_pb2,
    service_pb2,
    show_pb2,
    subscription_pb2,
    task_pb2,
)

from opencue_sandbox import protos
from opencue_sandbox.farm import Farm
from opencue_sandbox.model import Job

PROTO_MODULES = (
    "comment cue department depend facility filter host job limit renderPartition service "
    "show subscription task"
).split()

SPEC = """<?xml version="1.0"?>
<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" "http://localhost:8080/spcue/dtd/cjsl-1.15.dtd">
<spec><facility>local</facility><show>testing</show><shot>sh100</shot><user>probe</user>
<uid>1000</uid><job name="probe_{n}"><paused>False</paused><maxretries>2</maxretries>
<autoeat>False</autoeat><layers><layer name="render" type="Render"><cmd>/bin/true</cmd>
<range>1-4</range><chunk>1</chunk><cores>1.0</cores><memory>2g</memory>
<services><service>shell</service></services></layer></layers></job><depends/></spec>"""


def all_methods() -> list[tuple[str, str, Any]]:
    """(full service name, method name, method descriptor) for every Cuebot-side RPC."""
    found = []
    for name in PROTO_MODULES:
        module = importlib.import_module(f"opencue_proto.{name}_pb2")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                found.append((service.full_name, method.name, method))
    return found


def message_class(descriptor: Any) -> type[pb_message.Message]:
    module = importlib.import_module(
        "opencue_proto." + descriptor.file.name.removesuffix(".proto") + "_pb2"
    )
    cls: Any = module
    for part in descriptor.full_name.split(".")[1:]:
        cls = getattr(cls, part)
    return cls  # type: ignore[no-any-return]


class Probe:
    """Looks up one entity of each kind in the demo farm to reference in requests."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.counter = 0
        with farm.read() as state:
            self.show = state.show_named("testing")
            jobs = sorted(
                (j for j in self.show.jobs.values() if not j.finished and not j.paused),
                key=lambda j: j.name,
            )
            self.job: Job = next(j for j in jobs if any(la.counts[2] for la in j.layers))
            self.other_job = next(j for j in jobs if j is not self.job)
            self.layer = self.job.layers[0]
            self.frame = self.layer.frames[0]
            self.group = next(g for g in state.groups.values() if g.show is self.show and g.parent)
            self.proc = next(iter(sorted(state.procs.values(), key=lambda p: p.id)))
            self.host = self.proc.host
            self.owner = next(iter(state.owners.values()))
            self.deed = next(iter(self.owner.deeds.values()))
            self.alloc = state.alloc_named("local.general")
            self.filter = self.show.filters[0]
            self.matcher = self.filter.matchers[0]
            self.action = self.filter.actions[0]
            comments = sorted(state.comments.values(), key=lambda c: c.id)
            self.comment = comments[0] if comments else None
            self.depend = next(iter(state.depends.values()))
            self.subscription = next(iter(state.subscriptions.values()))
            self.service = next(s for s in state.services.values() if s.name == "shell")
            self.override = next(iter(self.show.overrides.values()))
            self.department = self.show.departments["lighting"]
            self.task = next(iter(self.department.tasks.values()))
            self.limit = next(iter(state.limits.values()))

    def unique(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter:03d}"

    def entity(self, full_name: str, service: str) -> pb_message.Message | None:
        """The message naming a demo entity of proto type ``full_name``."""
        state = self.farm.state
        table: dict[str, Any] = {
            "job.Job": lambda: job_pb2.Job(id=self.job.id, name=self.job.name),
            "job.Layer": lambda: job_pb2.Layer(id=self.layer.id, name=self.layer.name),
            "job.Frame": lambda: job_pb2.Frame(id=self.frame.id, name=self.frame.name),
            "job.Group": lambda: job_pb2.Group(id=self.group.id, name=self.group.name),
            "show.Show": lambda: show_pb2.Show(id=self.show.id, name=self.show.name),
            "host.Host": lambda: host_pb2.Host(id=self.host.id, name=self.host.name),
            "host.Proc": lambda: host_pb2.Proc(id=self.proc.id, name=self.proc.name),
            "host.Owner": lambda: host_pb2.Owner(id=self.owner.id, name=self.owner.name),
            "host.Deed": lambda: host_pb2.Deed(id=self.deed.id),
            "facility.Allocation": lambda: facility_pb2.Allocation(
                id=self.alloc.id, name=self.alloc.name
            ),
            "facility.Facility": lambda: facility_pb2.Facility(
                id=self.alloc.facility.id, name=self.alloc.facility.name
            ),
            "filter.Filter": lambda: filter_pb2.Filter(id=self.filter.id, name=self.filter.name),
            "filter.Matcher": lambda: protos.matcher(self.matcher),
            "filter.Action": lambda: protos.action(self.action),
            "comment.Comment": lambda: (
                protos.comment(self.comment)
                if self.comment
                else comment_pb2.Comment(subject="probe", message="hello", user="probe")
            ),
            "depend.Depend": lambda: depend_pb2.Depend(id=self.depend.id),
            "subscription.Subscription": lambda: subscription_pb2.Subscription(
                id=self.subscription.id, name=self.subscription.name
            ),
            "service.Service": lambda: (
                service_pb2.Service(id=self.override.id, name=self.override.data.name)
                if service == "service.ServiceOverrideInterface"
                else protos.service(self.service)
            ),
            "department.Department": lambda: department_pb2.Department(
                id=self.department.id, name=self.department.name
            ),
            "task.Task": lambda: task_pb2.Task(id=self.task.id, name=self.task.name),
        }
        del state
        make = table.get(full_name)
        return make() if make is not None else None

    def string(self, service: str, method: str, field: str) -> str:
        """A value for a plain string field, chosen by what the RPC means by it."""
        svc = service.split(".")[-1]
        creating = method.startswith(("Create", "Add")) or method in ("Rename", "SetName")
        if field == "spec":
            return SPEC.replace("{n}", self.unique("v"))
        if field in ("name", "new_name") and creating:
            return self.unique("probe_")
        if field == "old_name":
            return self.limit.name
        if field == "allocation_id" and method == "CreateSubscription":
            return self.farm.state.alloc_named("local.unassigned").id
        by_field = {
            "allocation_id": self.alloc.id,
            "group_id": self.group.id,
            "job_id": self.other_job.id,
            "limit_id": self.limit.id,
            "show": self.show.name,
            "department": self.department.dept,
            "host": self.host.name,
            "shot": "sh010",
            "range": "1-5",
            "old_tag": "linux",
            "new_tag": "linux64",
            "dept": "lighting",
            "limit_name": self.limit.name,
            "subscriber": "probe@example.com",
            "email": "probe@example.com",
            "ti_task": "lighting_ti",
            "os": "Linux",
            "username": "probe",
            "subject": "probe",
        }
        if field in by_field:
            return by_field[field]
        if field == "layer":
            return self.layer.name
        if field == "job":
            return self.job.id if method == "GetFrames" else self.job.name
        if field == "id":
            ids = {
                "JobInterface": self.job.id,
                "LayerInterface": self.layer.id,
                "FrameInterface": self.frame.id,
                "GroupInterface": self.group.id,
                "HostInterface": self.host.id,
                "AllocationInterface": self.alloc.id,
                "DependInterface": self.depend.id,
                "SubscriptionInterface": self.subscription.id,
                "LimitInterface": self.limit.id,
            }
            return ids.get(svc, "")
        if field == "name":
            names = {
                "ShowInterface": self.show.name,
                "JobInterface": self.job.name,
                "HostInterface": self.host.name,
                "OwnerInterface": self.owner.name,
                "FacilityInterface": self.alloc.facility.name,
                "AllocationInterface": self.alloc.name,
                "FilterInterface": self.filter.name,
                "GroupInterface": self.group.name,
                "ServiceInterface": self.service.name,
                "SubscriptionInterface": self.subscription.name,
                "LimitInterface": self.limit.name,
                "DepartmentInterface": self.unique("dept_"),
            }
            if svc == "ShowInterface" and method in ("FindFilter",):
                return self.filter.name
            if svc == "ShowInterface" and method == "GetServiceOverride":
                return self.override.data.name
            return names.get(svc, "")
        return ""

    def request(self, service: str, method: str, descriptor: Any) -> pb_message.Message:
        """A plausible request for ``service/method``."""
        with self.farm.read():
            msg = message_class(descriptor.input_type)()
            for field in descriptor.input_type.fields:
                if field.is_repeated:
                    self._repeated(msg, service, method, field)
                    continue
                if field.type == field.TYPE_MESSAGE:
                    value = self.entity(field.message_type.full_name, service)
                    if method == "CreateService":
                        value = service_pb2.Service(name=self.unique("svc_"), min_cores=100)
                    if value is not None:
                        getattr(msg, field.name).CopyFrom(value)
                elif field.type == field.TYPE_STRING:
                    setattr(msg, field.name, self.string(service, method, field.name))
                elif field.type == field.TYPE_BOOL:
                    setattr(msg, field.name, field.name not in ("kill",))
                elif field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
                    setattr(msg, field.name, 4.0)
                elif field.type == field.TYPE_ENUM:
                    setattr(msg, field.name, field.enum_type.values[0].number)
                else:
                    number = self.frame.number if field.name == "frame" else 4
                    setattr(msg, field.name, number)
            if service == "host.HostInterface" and method in ("GetDeed", "GetOwner"):
                deed_host = self.deed.host
                msg.host.CopyFrom(host_pb2.Host(id=deed_host.id, name=deed_host.name))
            return msg

    def _repeated(self, msg: Any, service: str, method: str, field: Any) -> None:
        if field.name in ("tags",):
            getattr(msg, field.name).append("probe")
        elif field.name == "proc_names":
            getattr(msg, field.name).append(self.proc.name)
