# -*- test-case-name: tests.test_submit -*-
"""
The JSON Schema of a job description, for the OpenAPI document.

It says what L{opencue_gw.jobs.description} accepts, so an editor or a generated client
can check a description before sending it; the gateway still checks everything itself
(the schema cannot say that a dependency names another layer of the job, for one).
"""

from __future__ import annotations

from typing import Any

from opencue_gw.jobs.description import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_PRIORITY,
    DEPEND_TYPES,
    LAYER_TYPES,
    MAX_LAYERS,
)

__all__ = ["DESCRIPTION_SCHEMA_NAME", "description_schemas"]

DESCRIPTION_SCHEMA_NAME = "gateway.JobDescription"
_PREFIX = "#/components/schemas/"

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]{3,}$"}
_WORD = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}
_SIZE = "Megabytes, or a size such as `4GB`, `512MB`, `1.5G`."
_MEMORY: dict[str, Any] = {
    "description": _SIZE,
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?\\s*[MmGg][Bb]?$"},
    ],
}
_ENV = {
    "type": "object",
    "description": "Environment variables set for the frames.",
    "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
    "additionalProperties": {"type": "string"},
}


def _names(item: dict[str, Any], text: str) -> dict[str, Any]:
    return {"description": text, "anyOf": [item, {"type": "array", "items": item}]}


def description_schemas() -> dict[str, dict[str, Any]]:
    """The component schemas: the job, its layers and their dependencies."""
    depend = {
        "type": "object",
        "title": "A dependency of a layer",
        "description": "The layer waits for another layer of the job.",
        "required": ["layer"],
        "additionalProperties": False,
        "properties": {
            "layer": {**_NAME, "description": "The layer waited for."},
            "type": {
                "type": "string",
                "enum": list(DEPEND_TYPES),
                "default": "LAYER_ON_LAYER",
                "description": "All of the other layer first (LAYER_ON_LAYER), each frame "
                "after the same frame of the other layer (FRAME_BY_FRAME), or after the "
                "frame before it (PREVIOUS_FRAME).",
            },
            "any_frame": {
                "type": "boolean",
                "default": False,
                "description": "LAYER_ON_LAYER only: start once any frame of the other "
                "layer is done.",
            },
        },
    }
    layer = {
        "type": "object",
        "title": "A layer of a job description",
        "required": ["name", "command", "range"],
        "additionalProperties": False,
        "properties": {
            "name": {**_NAME, "description": "Unique in the job (case and - vs _ ignored)."},
            "command": {
                "description": "A shell command line, or its arguments (quoted as needed). "
                "Cuebot replaces tokens such as `#IFRAME#` with the frame number.",
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {"type": "array", "minItems": 1, "items": {"type": "string"}},
                ],
            },
            "range": {
                "type": "string",
                "description": "Frames: `1-100`, `1-100x5` (every 5th), `1,5,9`.",
                "examples": ["1-100"],
            },
            "chunk": {"type": "integer", "minimum": 1, "default": 1},
            "type": {"type": "string", "enum": list(LAYER_TYPES), "default": "Render"},
            "cores": {
                "type": "number",
                "minimum": 0.01,
                "description": "Minimum cores per frame (the service's when left out).",
            },
            "threadable": {"type": "boolean"},
            "memory": {
                **_MEMORY,
                "description": "Minimum memory per frame. " + _SIZE,
            },
            "gpus": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "count": {"type": "integer", "minimum": 1, "default": 1},
                    "memory": {**_MEMORY, "description": "GPU memory; 1GB when left out."},
                },
            },
            "timeout": {"type": "integer", "minimum": 0, "description": "Minutes."},
            "timeout_llu": {
                "type": "integer",
                "minimum": 0,
                "description": "Minutes without a log update before the frame is hung.",
            },
            "tags": _names(
                {"type": "string", "pattern": "^[A-Za-z0-9_.]{3,}$"}, "Host tags the frames need."
            ),
            "limits": _names(_WORD, "Limit names."),
            "services": _names(_WORD, "Services; the first one Cuebot knows sets defaults."),
            "env": _ENV,
            "depends": {
                "type": "array",
                "description": "Layers this one waits for: a name (LAYER_ON_LAYER) or an object.",
                "items": {"anyOf": [_NAME, {"$ref": f"{_PREFIX}{DESCRIPTION_SCHEMA_NAME}.Depend"}]},
            },
        },
    }
    job = {
        "type": "object",
        "title": "A job description",
        "description": "A job to launch, as JSON; the gateway writes Cuebot's job spec "
        "from it. Every field in error is named in the 400 answer.",
        "required": ["name", "show", "shot", "user", "layers"],
        "additionalProperties": False,
        "properties": {
            "name": {**_NAME, "description": "The job name's suffix: show-shot-user_<name>."},
            "show": _WORD,
            "shot": _NAME,
            "user": {**_WORD, "not": {"const": "root"}},
            "facility": _WORD,
            "os": _WORD,
            "priority": {"type": "integer", "minimum": 0, "default": DEFAULT_PRIORITY},
            "max_retries": {"type": "integer", "minimum": 0, "default": DEFAULT_MAX_RETRIES},
            "paused": {"type": "boolean", "default": False},
            "auto_eat": {"type": "boolean", "default": False},
            "max_cores": {"type": "integer", "minimum": 1},
            "max_gpus": {"type": "integer", "minimum": 0},
            "uid": {"type": "integer", "minimum": 1, "description": "Unix uid to run as."},
            "email": {"type": "string"},
            "env": _ENV,
            "layers": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_LAYERS,
                "items": {"$ref": f"{_PREFIX}{DESCRIPTION_SCHEMA_NAME}.Layer"},
            },
        },
    }
    return {
        DESCRIPTION_SCHEMA_NAME: job,
        f"{DESCRIPTION_SCHEMA_NAME}.Layer": layer,
        f"{DESCRIPTION_SCHEMA_NAME}.Depend": depend,
    }
