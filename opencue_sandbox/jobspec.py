"""Parsing OpenCue job spec XML (what pyoutline and CueSubmit send) into job plans.

The stdlib parser never fetches the DTD named in the DOCTYPE and expat does not expand
external entities; internal entity declarations are refused outright.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import grpc
from opencue_proto import depend_pb2, job_pb2

from opencue_sandbox.errors import FarmError
from opencue_sandbox.farm import Farm
from opencue_sandbox.filters import run_filters
from opencue_sandbox.launch import (
    DependPlan,
    JobPlan,
    LayerPlan,
    add_depend,
    create_job,
    validate,
)
from opencue_sandbox.model import Job

GB = 1024 * 1024  # KB
FRAME_RETRIES_MAX = 16
_DEPEND_TYPES = {
    "JobOnJob": depend_pb2.JOB_ON_JOB,
    "JobOnLayer": depend_pb2.JOB_ON_LAYER,
    "JobOnFrame": depend_pb2.JOB_ON_FRAME,
    "LayerOnJob": depend_pb2.LAYER_ON_JOB,
    "LayerOnLayer": depend_pb2.LAYER_ON_LAYER,
    "LayerOnFrame": depend_pb2.LAYER_ON_FRAME,
    "FrameOnJob": depend_pb2.FRAME_ON_JOB,
    "FrameOnLayer": depend_pb2.FRAME_ON_LAYER,
    "FrameOnFrame": depend_pb2.FRAME_ON_FRAME,
    "FrameByFrame": depend_pb2.FRAME_BY_FRAME,
    "PreviousFrame": depend_pb2.PREVIOUS_FRAME,
    "LayerOnSimFrame": depend_pb2.LAYER_ON_SIM_FRAME,
}
# Cuebot upper-cases the attribute and looks it up in DependType: LAYER_ON_LAYER, as the
# DTD lists it and pyoutline writes it, is the real spelling.
_DEPEND_TYPES.update(depend_pb2.DependType.items())


class SpecError(ValueError):
    """A spec Cuebot's JobSpec would refuse."""


def _text(node: ET.Element, tag: str, default: str = "") -> str:
    child = node.find(tag)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def _bool(text: str) -> bool:
    return text.strip().lower() in ("true", "1", "yes", "on")


def memory_kb(text: str) -> int:
    """Cuebot's convertMemoryInput: "512m", "4g", or a bare number of gigabytes."""
    value = text.strip().lower()
    if "m" in value:
        return int(float(value[: value.rindex("m")]) * 1024)
    if "g" in value:
        return int(float(value[: value.rindex("g")]) * GB)
    return int(float(value) * GB)


def parse_spec(xml: str) -> tuple[list[JobPlan], list[DependPlan]]:
    if "<!ENTITY" in xml:
        raise SpecError("entity declarations are not allowed in a job spec")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise SpecError(f"Error on line {err.position[0]}: {err}") from None
    if root.tag != "spec":
        raise SpecError(f"the root element must be <spec>, not <{root.tag}>")
    show = _text(root, "show")
    shot = _text(root, "shot")
    user = _text(root, "user")
    if not show or not shot or not user:
        raise SpecError("the spec must name a show, a shot and a user")
    if user == "root" or _text(root, "uid") == "0":
        raise SpecError("Cannot launch jobs as root.")
    facility = (_text(root, "facility") or "local").lower()
    uid_text = _text(root, "uid", "0")
    plans: list[JobPlan] = []
    for job_node in root.findall("job"):
        plans.append(_job(job_node, show, shot, user, facility, uid_text, _text(root, "email")))
    if not plans:
        raise SpecError("the spec has no <job>")
    depends = [_depend(node, plans[0]) for node in root.findall("depends/depend")]
    return plans, depends


def _job(
    node: ET.Element, show: str, shot: str, user: str, facility: str, uid: str, email: str
) -> JobPlan:
    name = node.get("name")
    if not name:
        raise SpecError("Job names cannot be null")
    prefix = f"{show}-{shot}-{user}_"
    if name.startswith(prefix):
        name = name[len(prefix) :]
    name = name.lower().replace("-", "_")
    if len(name) < 3:
        raise SpecError(
            f"The job name suffix: {name} must be composed of alpha numeric characters, "
            "periods, and underscores and be at least 3 characters long"
        )
    retries = int(_text(node, "maxretries", "1") or "1")
    plan = JobPlan(
        name=name,
        show=show,
        shot=shot,
        user=user,
        facility=facility,
        os=_text(node, "os", "Linux"),
        uid=int(uid) if uid.isdigit() else 0,
        email=email,
        priority=int(_text(node, "priority", "1") or "1"),
        paused=_bool(_text(node, "paused", "false")),
        auto_eat=_bool(_text(node, "autoeat", "false")),
        max_retries=max(0, min(FRAME_RETRIES_MAX, retries)),
    )
    maxcores = _text(node, "maxcores")
    if maxcores:
        plan.max_cores = float(maxcores)
    layers = node.find("layers")
    if layers is None:
        raise SpecError(f"The job {plan.full_name} has no layers")
    for layer_node in layers.findall("layer"):
        plan.layers.append(_layer(layer_node))
    return plan


def _layer(node: ET.Element) -> LayerPlan:
    name = node.get("name")
    if not name:
        raise SpecError("error, the layer name cannot be null")
    type_name = (node.get("type") or "Render").upper()
    if type_name not in job_pb2.LayerType.keys():
        raise SpecError(f"error, the layer {name} was defined with an invalid type: {type_name}")
    rng = _text(node, "range")
    if not rng:
        raise SpecError(f"error, the layer {name} has no frame range")
    services = [s.text.strip() for s in node.findall("services/service") if s.text]
    tags = [t.strip() for t in _text(node, "tags").split("|") if t.strip()]
    plan = LayerPlan(
        name=name.lower().replace("-", "_"),
        command=_text(node, "cmd"),
        range=rng,
        chunk=int(_text(node, "chunk", "1") or "1"),
        type=job_pb2.LayerType.Value(type_name),
        services=services or ["default"],
        tags=tags or ["general"],
        limits=[t.text.strip() for t in node.findall("limits/limit") if t.text],
        outputs=[o.text.strip() for o in node.findall("outputs/output") if o.text],
    )
    cores = _text(node, "cores")
    if cores:
        plan.cores = max(0.01, float(cores))
    memory = _text(node, "memory")
    if memory:
        plan.memory = memory_kb(memory)
    gpus = _text(node, "gpus")
    if gpus:
        plan.gpus = float(gpus)
    gpu_memory = _text(node, "gpu_memory")
    if gpu_memory:
        plan.gpu_memory = memory_kb(gpu_memory)
    plan.threadable = _bool(_text(node, "threadable", "false"))
    timeout = _text(node, "timeout")
    if timeout:
        plan.timeout = int(timeout)
    timeout_llu = _text(node, "timeout_llu")
    if timeout_llu:
        plan.timeout_llu = int(timeout_llu)
    return plan


def _depend(node: ET.Element, first: JobPlan) -> DependPlan:
    type_name = node.get("type", "")
    if type_name not in _DEPEND_TYPES:
        raise SpecError(f"invalid depend type: {type_name}")

    def job_name(tag: str) -> str:
        short = _text(node, tag)
        probe = JobPlan(name=short, show=first.show, shot=first.shot, user=first.user)
        return probe.full_name if short else ""

    return DependPlan(
        type=_DEPEND_TYPES[type_name],
        er_job=job_name("depjob"),
        on_job=job_name("onjob"),
        er_layer=_text(node, "deplayer"),
        on_layer=_text(node, "onlayer"),
        er_frame=_text(node, "depframe"),
        on_frame=_text(node, "onframe"),
        any_frame=_bool(node.get("anyframe", "false")),
    )


def launch_spec(farm: Farm, xml: str, error_prefix: str) -> list[Job]:
    """Parse and launch a spec; failures answer INTERNAL "<prefix><reason>" as Cuebot."""
    try:
        plans, depends = parse_spec(xml)
    except (SpecError, ValueError) as err:
        raise FarmError(grpc.StatusCode.INTERNAL, error_prefix + str(err)) from None
    with farm.mutate():
        try:
            for plan in plans:
                validate(farm, plan)
            jobs = [create_job(farm, plan) for plan in plans]
            for dep in depends:
                add_depend(farm, dep)
        except FarmError as err:
            raise FarmError(grpc.StatusCode.INTERNAL, error_prefix + err.message) from None
        for job in jobs:
            run_filters(farm, job)
    return jobs
