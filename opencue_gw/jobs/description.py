# -*- test-case-name: tests.test_submit -*-
"""
A job described as JSON, checked field by field before anything reaches Cuebot.

Cuebot reads a job spec with a validating XML parser and its own name rules (JobSpec):
a mistake there comes back as one INTERNAL "Failed to launch and add job" naming only
the first problem, and some mistakes are not refused at all but silently replaced by a
default (a memory of "4.5g", cores written without a decimal point). So the gateway
reads the description itself: every field in error is reported at once, by its JSON
path (C{layers[1].range}), and what it passes on is what Cuebot will read the way the
user meant it. L{read_description} returns the checked job as plain values for
L{opencue_gw.jobs.specxml} to write.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_PRIORITY",
    "DEPEND_TYPES",
    "LAYER_TYPES",
    "MAX_FRAMES",
    "MAX_LAYERS",
    "DependDescription",
    "DescriptionError",
    "FieldError",
    "JobDescription",
    "LayerDescription",
    "frame_count",
    "read_description",
    "validate",
]

# pyoutline's launch defaults (OutlineLauncher, outline.cfg), so a description that leaves
# them out launches the job pyoutline would.
DEFAULT_PRIORITY = 1
DEFAULT_MAX_RETRIES = 2
# Cuebot's JobSpec limits: more layers or frames than this and it refuses the job.
MAX_LAYERS = 1000
MAX_FRAMES = 100_000
_INT32_MAX = 2**31 - 1
# A petabyte: only a typo asks for more (Cuebot's own ceiling is lower and site-set).
_MAX_MEGABYTES = 2**30

# Layer types as the DTD spells them (the attribute is an enumeration, so case counts).
LAYER_TYPES = ("Render", "Util", "Post")
# The dependency types pyoutline writes between layers of one job, as Cuebot's
# DependType names them (JobSpec upper-cases the attribute and looks it up).
DEPEND_TYPES = ("LAYER_ON_LAYER", "FRAME_BY_FRAME", "PREVIOUS_FRAME")

# Cuebot's NAME_PATTERN ^[\w.]{3,}$ (Java's \w is ASCII), checked after it turns "-"
# into "_": job and layer names, shots and tags.
_NAME = re.compile(r"[A-Za-z0-9_.-]{3,}", re.ASCII)
_TAG = re.compile(r"[A-Za-z0-9_.]{3,}", re.ASCII)
# Show, user, facility, service and limit names: no rule in JobSpec beyond being a
# word; the same characters keep them safe in a job name and on a command line.
_WORD = re.compile(r"[A-Za-z0-9_.-]+", re.ASCII)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
# One part of a frame set: 1, 1-100, 1-100x5 (every 5th), 1-100y5 (the others),
# 1-100:5 (interleaved); frame numbers may be negative.
_FRAME_PART = re.compile(r"(-?[0-9]+)(?:-(-?[0-9]+)(?:([xy:])([0-9]+))?)?", re.ASCII)
_MEMORY = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([mg])b?", re.ASCII | re.IGNORECASE)
# Characters XML 1.0 cannot carry at all, escaped or not, and lone surrogates (JSON
# can spell them, UTF-8 cannot encode them).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Cuebot replaces these in a command before the shell sees it.
_CUE_TOKEN = re.compile(r"#[A-Z_]+#")

_JOB_FIELDS = frozenset(
    {
        "name",
        "show",
        "shot",
        "user",
        "facility",
        "os",
        "priority",
        "max_retries",
        "paused",
        "auto_eat",
        "max_cores",
        "max_gpus",
        "uid",
        "email",
        "env",
        "layers",
    }
)
_LAYER_FIELDS = frozenset(
    {
        "name",
        "command",
        "range",
        "chunk",
        "type",
        "cores",
        "threadable",
        "memory",
        "gpus",
        "timeout",
        "timeout_llu",
        "tags",
        "limits",
        "env",
        "services",
        "depends",
    }
)
_GPU_FIELDS = frozenset({"count", "memory"})
_DEPEND_FIELDS = frozenset({"layer", "type", "any_frame"})


@dataclass(frozen=True)
class FieldError:
    """One field in error: its JSON path (C{layers[1].range}) and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class DescriptionError(ValueError):
    """A description with fields in error; C{errors} names every one."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        super().__init__("; ".join(str(error) for error in errors))
        self.errors = tuple(errors)


@dataclass(frozen=True)
class DependDescription:
    """This layer waits for C{layer}: all of it, frame by frame, or the previous frame."""

    layer: str
    type: str = "LAYER_ON_LAYER"
    any_frame: bool = False


@dataclass(frozen=True)
class LayerDescription:
    """A checked layer. Memory is in megabytes; C{None} leaves a value to Cuebot's service."""

    name: str
    command: str
    range: str
    chunk: int = 1
    type: str = "Render"
    cores: float | None = None
    threadable: bool | None = None
    memory_mb: int | None = None
    gpus: int | None = None
    gpu_memory_mb: int | None = None
    timeout: int | None = None
    timeout_llu: int | None = None
    tags: tuple[str, ...] = ()
    limits: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    services: tuple[str, ...] = ()
    depends: tuple[DependDescription, ...] = ()


@dataclass(frozen=True)
class JobDescription:
    """A checked job, ready to be written as a job spec."""

    name: str
    show: str
    shot: str
    user: str
    layers: tuple[LayerDescription, ...]
    facility: str | None = None
    os: str | None = None
    priority: int = DEFAULT_PRIORITY
    max_retries: int = DEFAULT_MAX_RETRIES
    paused: bool = False
    auto_eat: bool = False
    max_cores: int | None = None
    max_gpus: int | None = None
    uid: int | None = None
    email: str | None = None
    env: tuple[tuple[str, str], ...] = field(default=())


def frame_count(frame_range: str) -> int:
    """
    How many frames C{frame_range} names (Cuebot's frame-set syntax); C{ValueError} if it
    is not one. Counted, not expanded, so C{1-1000000000} costs nothing.
    """
    total = 0
    for part in frame_range.split(","):
        match = _FRAME_PART.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"{part.strip()!r} is not a frame, a range like 1-100 or 1-100x5")
        start, end, op, step_text = match.groups()
        first = int(start)
        last = int(end) if end is not None else first
        if max(abs(first), abs(last)) > _INT32_MAX:
            raise ValueError(f"{part.strip()!r} has a frame number past Cuebot's integers")
        span = abs(last - first) + 1  # 10-1 counts down
        step = int(step_text) if step_text is not None else 1
        if step < 1:
            raise ValueError(f"{part.strip()!r} has a step below 1")
        if op == "x":
            span = math.ceil(span / step)
        elif op == "y":
            span -= math.ceil(span / step)
        total += span
    return total


class _Reader:
    """Walks one description, collecting every error instead of stopping at the first."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def fail(self, path: str, problem: str) -> None:
        self.errors.append(FieldError(path, problem))

    def unknown(self, path: str, value: Mapping[str, Any], known: frozenset[str]) -> None:
        prefix = f"{path}." if path else ""
        for name in value:
            if name not in known:
                self.fail(f"{prefix}{name}", "unknown field")

    def text(
        self,
        path: str,
        value: Any,
        *,
        pattern: re.Pattern[str] | None = None,
        rule: str = "",
    ) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, got {_kind(value)}")
            return None
        if not value.strip():
            self.fail(path, "must not be empty")
            return None
        if _NOT_XML.search(value):
            self.fail(path, "contains a control character a job spec cannot carry")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, f"{_shown(value)} {rule}")
            return None
        return value

    def name(self, path: str, value: Any) -> str | None:
        return self.text(
            path,
            value,
            pattern=_NAME,
            rule="must be at least 3 letters, digits, '_', '-' or '.'",
        )

    def word(self, path: str, value: Any) -> str | None:
        return self.text(path, value, pattern=_WORD, rule="may only have letters, digits, _ - .")

    def integer(self, path: str, value: Any, low: int, high: int = _INT32_MAX) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected an integer, got {_kind(value)}")
            return None
        if isinstance(value, float):
            if not value.is_integer():
                self.fail(path, f"expected an integer, got {value!r}")
                return None
            value = int(value)
        if not low <= value <= high:
            self.fail(path, f"{value} is out of range ({low} to {high})")
            return None
        return value

    def boolean(self, path: str, value: Any) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, got {_kind(value)}")
            return None
        return value

    def memory(self, path: str, value: Any) -> int | None:
        """Megabytes from an integer (megabytes) or a string such as C{"4GB"}, C{"512MB"}."""
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(path, f"expected megabytes or a size like '4GB', got {_kind(value)}")
            return None
        if isinstance(value, int):
            megabytes: float = value
        else:
            match = _MEMORY.fullmatch(value.strip())
            if match is None:
                self.fail(path, f"{_shown(value)} is not a size like '4GB' or '512MB'")
                return None
            number, unit = float(match.group(1)), match.group(2).lower()
            megabytes = number * 1024 if unit == "g" else number
        if not float(megabytes).is_integer():
            self.fail(path, f"{_shown(value)} is not a whole number of megabytes")
            return None
        if megabytes <= 0:
            self.fail(path, "must be more than 0")
            return None
        if megabytes > _MAX_MEGABYTES:
            self.fail(path, f"{_shown(value)} is more than any host has")
            return None
        return int(megabytes)

    def names(self, path: str, value: Any, pattern: re.Pattern[str], rule: str) -> tuple[str, ...]:
        """A list of names, or one name given alone."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            self.fail(path, f"expected a list of strings, got {_kind(value)}")
            return ()
        found: list[str] = []
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if not isinstance(value, str) else path
            checked = self.text(where, item, pattern=pattern, rule=rule)
            if checked is not None and checked not in found:
                found.append(checked)
        return tuple(found)

    def env(self, path: str, value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            self.fail(path, f"expected an object of names to strings, got {_kind(value)}")
            return ()
        pairs: list[tuple[str, str]] = []
        for name, text in value.items():
            where = f"{path}.{name}"
            if not _ENV_NAME.fullmatch(name):
                self.fail(where, "is not an environment variable name (letters, digits, _)")
                continue
            if not isinstance(text, str):
                self.fail(where, f"expected a string, got {_kind(text)}")
                continue
            if _NOT_XML.search(text):
                self.fail(where, "contains a control character a job spec cannot carry")
                continue
            pairs.append((name, text))
        return tuple(pairs)

    def command(self, path: str, value: Any) -> str | None:
        """A command line as Cuebot runs it: a string as given, a list quoted for the shell."""
        if isinstance(value, str):
            return self.text(path, value)
        if not isinstance(value, list) or not value:
            self.fail(path, f"expected a string or a non-empty list of strings, got {_kind(value)}")
            return None
        words: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{path}[{index}]", f"expected a string, got {_kind(item)}")
            elif _NOT_XML.search(item):
                self.fail(
                    f"{path}[{index}]", "contains a control character a job spec cannot carry"
                )
            else:
                words.append(_quote(item))
        if len(words) != len(value):
            return None
        if not value[0].strip():
            self.fail(f"{path}[0]", "must not be empty")
            return None
        return " ".join(words)


def _quote(word: str) -> str:
    """
    One argument for the shell, quoted only if it needs it; Cuebot's C{#IFRAME#}-style
    tokens are left bare, since Cuebot replaces them before the shell reads the line.
    """
    plain = _CUE_TOKEN.sub("0", word)
    if plain and shlex.quote(plain) == plain:
        return word
    return shlex.quote(word)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _conformed(name: str) -> str:
    """A name as Cuebot stores it (JobSpec.conformName): lower case, "-" as "_"."""
    return name.lower().replace("-", "_")


def _required(reader: _Reader, source: Mapping[str, Any], path: str, names: Sequence[str]) -> None:
    prefix = f"{path}." if path else ""
    for name in names:
        if source.get(name) is None:
            reader.fail(f"{prefix}{name}", "is required")


def _depends(reader: _Reader, path: str, value: Any) -> tuple[DependDescription, ...]:
    if not isinstance(value, list):
        reader.fail(path, f"expected a list, got {_kind(value)}")
        return ()
    found: list[DependDescription] = []
    for index, item in enumerate(value):
        where = f"{path}[{index}]"
        if isinstance(item, str):
            item = {"layer": item}
        if not isinstance(item, dict):
            reader.fail(where, f"expected a layer name or an object, got {_kind(item)}")
            continue
        reader.unknown(where, item, _DEPEND_FIELDS)
        if item.get("layer") is None:
            reader.fail(f"{where}.layer", "is required")
            continue
        layer = reader.name(f"{where}.layer", item["layer"])
        kind = item.get("type", "LAYER_ON_LAYER")
        if not isinstance(kind, str) or kind.upper() not in DEPEND_TYPES:
            reader.fail(f"{where}.type", f"{_shown(kind)} is not one of {', '.join(DEPEND_TYPES)}")
            continue
        any_frame = False
        if item.get("any_frame") is not None:
            checked = reader.boolean(f"{where}.any_frame", item["any_frame"])
            if checked and kind.upper() != "LAYER_ON_LAYER":
                reader.fail(f"{where}.any_frame", "applies to LAYER_ON_LAYER only")
            any_frame = bool(checked)
        if layer is not None:
            found.append(DependDescription(layer, kind.upper(), any_frame))
    return tuple(found)


def _layer(reader: _Reader, path: str, value: Any) -> tuple[LayerDescription | None, int]:
    """The checked layer (or C{None}) and how many frames it has (0 if unknown)."""
    if not isinstance(value, dict):
        reader.fail(path, f"expected an object, got {_kind(value)}")
        return None, 0
    before = len(reader.errors)
    reader.unknown(path, value, _LAYER_FIELDS)
    _required(reader, value, path, ("name", "command", "range"))
    get = value.get
    name = reader.name(f"{path}.name", get("name")) if get("name") is not None else None
    command = None
    if get("command") is not None:
        command = reader.command(f"{path}.command", get("command"))
    chunk = 1
    if get("chunk") is not None:
        chunk = reader.integer(f"{path}.chunk", get("chunk"), 1) or 1
    frames = 0
    frame_range = None
    if get("range") is not None:
        frame_range = reader.text(f"{path}.range", get("range"))
        if frame_range is not None:
            try:
                frames = math.ceil(frame_count(frame_range) / chunk)
            except ValueError as error:
                reader.fail(f"{path}.range", str(error))
                frame_range = None
    layer_type = "Render"
    if get("type") is not None:
        spelled = {kind.lower(): kind for kind in LAYER_TYPES}
        kind = get("type")
        if not isinstance(kind, str) or kind.lower() not in spelled:
            reader.fail(f"{path}.type", f"{_shown(kind)} is not one of {', '.join(LAYER_TYPES)}")
        else:
            layer_type = spelled[kind.lower()]
    cores = None
    if get("cores") is not None:
        number = get("cores")
        if isinstance(number, bool) or not isinstance(number, int | float):
            reader.fail(f"{path}.cores", f"expected a number, got {_kind(number)}")
        elif not 0.01 <= number <= 10_000 or not math.isfinite(number):
            reader.fail(f"{path}.cores", f"{number!r} is out of range (0.01 to 10000)")
        else:
            cores = float(number)
    gpus = gpu_memory = None
    if get("gpus") is not None:
        given = get("gpus")
        if not isinstance(given, dict):
            reader.fail(
                f"{path}.gpus", f"expected an object with count and memory, got {_kind(given)}"
            )
        else:
            reader.unknown(f"{path}.gpus", given, _GPU_FIELDS)
            if given.get("count") is not None:
                gpus = reader.integer(f"{path}.gpus.count", given["count"], 1)
            if given.get("memory") is not None:
                gpu_memory = reader.memory(f"{path}.gpus.memory", given["memory"])
    optional: dict[str, Any] = {}
    for key, check in (
        ("threadable", lambda p, v: reader.boolean(p, v)),
        ("memory", lambda p, v: reader.memory(p, v)),
        ("timeout", lambda p, v: reader.integer(p, v, 0)),
        ("timeout_llu", lambda p, v: reader.integer(p, v, 0)),
        ("env", lambda p, v: reader.env(p, v)),
        ("depends", lambda p, v: _depends(reader, p, v)),
        (
            "tags",
            lambda p, v: reader.names(p, v, _TAG, "must be at least 3 letters, digits, _ or ."),
        ),
        ("limits", lambda p, v: reader.names(p, v, _WORD, "may only have letters, digits, _ - .")),
        (
            "services",
            lambda p, v: reader.names(p, v, _WORD, "may only have letters, digits, _ - ."),
        ),
    ):
        if get(key) is not None:
            optional[key] = check(f"{path}.{key}", get(key))
    if len(reader.errors) > before or name is None or command is None or frame_range is None:
        return None, frames
    layer = LayerDescription(
        name=name,
        command=command,
        range=frame_range.replace(" ", ""),
        chunk=chunk,
        type=layer_type,
        cores=cores,
        threadable=optional.get("threadable"),
        memory_mb=optional.get("memory"),
        gpus=gpus,
        gpu_memory_mb=gpu_memory,
        timeout=optional.get("timeout"),
        timeout_llu=optional.get("timeout_llu"),
        tags=optional.get("tags", ()),
        limits=optional.get("limits", ()),
        env=optional.get("env", ()),
        services=optional.get("services", ()),
        depends=optional.get("depends", ()),
    )
    return layer, frames


def _check_depends(reader: _Reader, layers: Sequence[Any]) -> None:
    """Every dependency names another layer of the job, once, and they form no cycle."""
    index_of: dict[str, int] = {}
    for index, layer in enumerate(layers):
        if isinstance(layer, dict) and isinstance(layer.get("name"), str):
            index_of.setdefault(_conformed(layer["name"]), index)
    edges: dict[int, set[int]] = {}
    for index, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("depends"), list):
            continue
        seen: set[int] = set()
        for position, item in enumerate(layer["depends"]):
            target = item if isinstance(item, str) else None
            if isinstance(item, dict) and isinstance(item.get("layer"), str):
                target = item["layer"]
            if target is None or not _NAME.fullmatch(target):
                continue  # already reported by _depends
            where = f"layers[{index}].depends[{position}]"
            if not isinstance(item, str):
                where += ".layer"
            on = index_of.get(_conformed(target))
            if on is None:
                reader.fail(where, f"{_shown(target)} is not a layer of this job")
            elif on == index:
                reader.fail(where, "a layer cannot depend on itself")
            elif on in seen:
                reader.fail(where, f"{_shown(target)} is given twice")
            else:
                seen.add(on)
                edges.setdefault(index, set()).add(on)
    cycle = _cycle(edges)
    if cycle:
        names = " -> ".join(str(layers[i].get("name")) for i in cycle)
        reader.fail(f"layers[{cycle[0]}].depends", f"the layers wait for each other: {names}")


def _cycle(edges: Mapping[int, set[int]]) -> list[int]:
    """One cycle of the dependency graph as a closed path, or C{[]}."""
    state: dict[int, int] = {}  # 1: on the current path, 2: done
    path: list[int] = []

    def visit(node: int) -> list[int]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(edges):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []


def _read(reader: _Reader, description: Any) -> JobDescription | None:
    if not isinstance(description, Mapping):
        reader.fail("$", f"expected a JSON object, got {_kind(description)}")
        return None
    reader.unknown("", description, _JOB_FIELDS)
    _required(reader, description, "", ("name", "show", "shot", "user", "layers"))
    get = description.get
    name = reader.name("name", get("name")) if get("name") is not None else None
    show = reader.word("show", get("show")) if get("show") is not None else None
    shot = reader.name("shot", get("shot")) if get("shot") is not None else None
    user = reader.word("user", get("user")) if get("user") is not None else None
    if user == "root":
        reader.fail("user", "jobs cannot run as root")
    values: dict[str, Any] = {}
    for key, check in (
        ("facility", lambda p, v: reader.word(p, v)),
        ("os", lambda p, v: reader.word(p, v)),
        ("priority", lambda p, v: reader.integer(p, v, 0)),
        ("max_retries", lambda p, v: reader.integer(p, v, 0)),
        ("paused", lambda p, v: reader.boolean(p, v)),
        ("auto_eat", lambda p, v: reader.boolean(p, v)),
        ("max_cores", lambda p, v: reader.integer(p, v, 1)),
        ("max_gpus", lambda p, v: reader.integer(p, v, 0)),
        ("uid", lambda p, v: reader.integer(p, v, 1)),
        ("env", lambda p, v: reader.env(p, v)),
        (
            "email",
            lambda p, v: reader.text(p, v, pattern=_EMAIL, rule="is not an e-mail address"),
        ),
    ):
        if get(key) is not None:
            values[key] = check(key, get(key))
    layers: list[LayerDescription] = []
    raw_layers = get("layers")
    if raw_layers is not None:
        if not isinstance(raw_layers, list):
            reader.fail("layers", f"expected a list of layers, got {_kind(raw_layers)}")
        elif not raw_layers:
            reader.fail("layers", "a job needs at least one layer")
        elif len(raw_layers) > MAX_LAYERS:
            reader.fail("layers", f"{len(raw_layers)} layers; Cuebot takes at most {MAX_LAYERS}")
        else:
            total = 0
            first_of: dict[str, int] = {}
            for index, item in enumerate(raw_layers):
                layer, frames = _layer(reader, f"layers[{index}]", item)
                total += frames
                if layer is None:
                    continue
                key = _conformed(layer.name)
                if key in first_of:
                    reader.fail(
                        f"layers[{index}].name",
                        f"{_shown(layer.name)} is the name of layers[{first_of[key]}] too",
                    )
                first_of.setdefault(key, index)
                layers.append(layer)
            if total > MAX_FRAMES:
                reader.fail("layers", f"{total} frames in all; Cuebot takes at most {MAX_FRAMES}")
            _check_depends(reader, raw_layers)
    if reader.errors or name is None or show is None or shot is None or user is None:
        return None
    return JobDescription(
        name=name,
        show=show,
        shot=shot,
        user=user,
        layers=tuple(layers),
        facility=values.get("facility"),
        os=values.get("os"),
        priority=values.get("priority", DEFAULT_PRIORITY),
        max_retries=values.get("max_retries", DEFAULT_MAX_RETRIES),
        paused=values.get("paused", False),
        auto_eat=values.get("auto_eat", False),
        max_cores=values.get("max_cores"),
        max_gpus=values.get("max_gpus"),
        uid=values.get("uid"),
        email=values.get("email"),
        env=values.get("env", ()),
    )


def validate(description: Any) -> list[FieldError]:
    """Every field in error in C{description}, in document order; empty if it is good."""
    reader = _Reader()
    _read(reader, description)
    return reader.errors


def read_description(description: Any) -> JobDescription:
    """The checked job; L{DescriptionError} naming every field in error otherwise."""
    reader = _Reader()
    job = _read(reader, description)
    if job is None:
        raise DescriptionError(reader.errors)
    return job
