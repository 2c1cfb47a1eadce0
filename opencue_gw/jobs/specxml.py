# -*- test-case-name: tests.test_submit -*-
"""
Writing a checked job as the job-spec XML Cuebot's C{LaunchSpec} reads.

The document is the one pyoutline 1.37 writes (its C{outline.backend.cue}): the same
DOCTYPE, naming DTD C{cjsl-1.15}, and the elements in the DTD's order, which matters
because Cuebot parses with a validating parser. Values are written the way Cuebot reads
them: cores always with a decimal point (without one Cuebot reads core points, so "2"
would be 0.02 cores), memory as whole C{g} or C{m} (Cuebot reads "4.5g" as nothing and
falls back to the default). All user text goes through L{xml.etree.ElementTree}, which
escapes it; nothing is pasted into markup.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from opencue_gw.jobs.description import JobDescription, LayerDescription, read_description

__all__ = ["DOCTYPE", "SPEC_VERSION", "job_spec_xml", "spec_xml"]

SPEC_VERSION = "1.15"
# Byte for byte what pyoutline writes, the double space in the public id included
# (Cuebot resolves the DTD by the system id; the public id is not looked at).
DOCTYPE = (
    '<!DOCTYPE spec PUBLIC "SPI Cue  Specification Language" '
    f'"http://localhost:8080/spcue/dtd/cjsl-{SPEC_VERSION}.dtd">'
)
_DECLARATION = '<?xml version="1.0"?>'


def _child(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = text
    return element


def _flag(value: bool) -> str:
    """Booleans as pyoutline writes them; Cuebot's Convert.stringToBool reads both."""
    return "True" if value else "False"


def _cores(cores: float) -> str:
    """Always with a decimal point, to two places at most: Cuebot's core-point precision."""
    text = f"{cores:.2f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _memory(megabytes: int) -> str:
    return f"{megabytes // 1024}g" if megabytes % 1024 == 0 else f"{megabytes}m"


def _env(parent: ET.Element, pairs: Iterable[tuple[str, str]]) -> None:
    env = ET.SubElement(parent, "env")
    for name, value in pairs:
        _child(env, "key", value).set("name", name)


def _layer(layers: ET.Element, layer: LayerDescription) -> None:
    node = ET.SubElement(layers, "layer", {"name": layer.name, "type": layer.type})
    _child(node, "cmd", layer.command)
    _child(node, "range", layer.range)
    _child(node, "chunk", str(layer.chunk))
    if layer.cores is not None:
        _child(node, "cores", _cores(layer.cores))
    if layer.threadable is not None:
        _child(node, "threadable", _flag(layer.threadable))
    if layer.memory_mb is not None:
        _child(node, "memory", _memory(layer.memory_mb))
    if layer.gpus is not None or layer.gpu_memory_mb is not None:
        # As pyoutline: Cuebot wants both set and positive once either is.
        _child(node, "gpus", str(layer.gpus if layer.gpus is not None else 1))
        memory = layer.gpu_memory_mb if layer.gpu_memory_mb is not None else 1024
        _child(node, "gpu_memory", _memory(memory))
    if layer.timeout is not None:
        _child(node, "timeout", str(layer.timeout))
    if layer.timeout_llu is not None:
        _child(node, "timeout_llu", str(layer.timeout_llu))
    if layer.tags:
        _child(node, "tags", " | ".join(layer.tags))
    if layer.limits:
        limits = ET.SubElement(node, "limits")
        for name in layer.limits:
            _child(limits, "limit", name)
    _env(node, layer.env)
    if layer.services:
        services = ET.SubElement(node, "services")
        for name in layer.services:
            _child(services, "service", name)


def spec_xml(job: JobDescription) -> str:
    """The job-spec document for a checked job."""
    root = ET.Element("spec")
    if job.facility is not None:
        _child(root, "facility", job.facility)
    _child(root, "show", job.show)
    _child(root, "shot", job.shot)
    _child(root, "user", job.user)
    if job.email is not None:
        _child(root, "email", job.email)
    if job.uid is not None:
        _child(root, "uid", str(job.uid))
    node = ET.SubElement(root, "job", {"name": job.name})
    _child(node, "paused", _flag(job.paused))
    _child(node, "priority", str(job.priority))
    _child(node, "maxretries", str(job.max_retries))
    if job.max_cores is not None:
        _child(node, "maxcores", str(job.max_cores))
    if job.max_gpus is not None:
        _child(node, "maxgpus", str(job.max_gpus))
    _child(node, "autoeat", _flag(job.auto_eat))
    if job.os is not None:
        _child(node, "os", job.os)
    _env(node, job.env)
    layers = ET.SubElement(node, "layers")
    for layer in job.layers:
        _layer(layers, layer)
    depends = ET.SubElement(root, "depends")
    for layer in job.layers:
        for depend in layer.depends:
            attributes = {"type": depend.type, "anyframe": _flag(depend.any_frame)}
            element = ET.SubElement(depends, "depend", attributes)
            _child(element, "depjob", job.name)
            _child(element, "deplayer", layer.name)
            _child(element, "onjob", job.name)
            _child(element, "onlayer", depend.layer)
    return _DECLARATION + DOCTYPE + ET.tostring(root, encoding="unicode")


def job_spec_xml(description: Mapping[str, Any]) -> str:
    """
    The job-spec XML for a JSON job description; raises
    L{opencue_gw.jobs.description.DescriptionError} naming every field in error.
    """
    return spec_xml(read_description(description))
