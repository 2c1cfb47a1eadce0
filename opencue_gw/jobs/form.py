# -*- test-case-name: tests.test_submit -*-
"""
C{POST /api/v1/jobs} with a JSON job description instead of job-spec XML.

The route's own body is C{{"spec": "<xml>"}} (C{LaunchSpecAndWait}); a body that
describes the job instead (it has C{layers}, C{name}, C{show}, ... and no C{spec}) is
checked and turned into that body here, so the launch itself is the route's usual call
with its deadline, authentication, audit and error answers. C{?dry_run=true} answers
C{{"spec": "<xml>"}} without calling Cuebot: the same shape the route takes, so a
script can look at the XML, keep it, or post it back as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from opencue_gw.errors import GatewayError
from opencue_gw.jobs.description import DescriptionError, FieldError
from opencue_gw.jobs.schema import DESCRIPTION_SCHEMA_NAME, description_schemas
from opencue_gw.jobs.specxml import job_spec_xml

__all__ = [
    "DRY_RUN",
    "JOB_DESCRIPTION",
    "BodyForm",
    "JobDescriptionForm",
    "Prepared",
    "description_error",
    "url_query",
]

DRY_RUN = "dry_run"
# Beyond this many, the 400 answer says how many more there are instead of naming them:
# a thousand bad layers should not make a megabyte of error message.
MAX_NAMED_ERRORS = 100
_TRUE = frozenset({"", "true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# Members that mark a body as a description rather than the route's own {"spec": ...}.
_DESCRIPTION_MARKS = frozenset({"layers", "name", "show", "shot", "user"})


@dataclass(frozen=True)
class Prepared:
    """
    What a body form made of a request: the route's own body members (each a list of
    values, as the handler keeps them), or an C{answer} given without calling Cuebot.
    """

    members: Mapping[str, list[Any]]
    answer: bytes | None = None


class BodyForm(Protocol):
    """Another JSON shape a POST route's body may take, and how it is described."""

    query_params: Sequence[str]
    """Query parameters the form reads (any other is refused)."""
    schema_name: str
    """The component schema of the body, among L{schemas}."""

    def prepare(self, body: Mapping[str, list[Any]], query: Mapping[str, list[str]]) -> Prepared:
        """The route's own members for C{body}; raises L{GatewayError} (400) if it is wrong."""

    def schemas(self) -> dict[str, dict[str, Any]]:
        """Component schemas for the OpenAPI document, by name."""

    def parameters(self) -> list[dict[str, Any]]:
        """OpenAPI parameter objects for L{query_params}."""

    def answer_schema(self) -> dict[str, Any]:
        """The schema of an answer given without calling Cuebot."""


def description_error(errors: Sequence[FieldError]) -> GatewayError:
    """The 400 answer (code 3) naming every field in error."""
    named = "; ".join(str(error) for error in errors[:MAX_NAMED_ERRORS])
    more = len(errors) - MAX_NAMED_ERRORS
    if more > 0:
        named += f"; and {more} more"
    return GatewayError.invalid_argument(f"invalid job description: {named}")


def url_query(uri: bytes) -> dict[str, list[str]]:
    """
    The query of a request URI. Not C{request.args}: for a POST sent as a form (curl's
    C{-d} without a C{Content-Type}) Twisted puts the body's fields there too.
    """
    try:
        query = urlsplit(uri.decode("utf-8")).query
    except UnicodeDecodeError:
        raise GatewayError.invalid_argument("query parameters must be UTF-8") from None
    return parse_qs(query, keep_blank_values=True)


def _dry_run(query: Mapping[str, list[str]], accepted: Sequence[str]) -> bool:
    for name in query:
        if name not in accepted:
            raise GatewayError.invalid_argument(
                f"unknown query parameter {name!r} (accepted: {', '.join(accepted)})"
            )
    values = query.get(DRY_RUN, [])
    if len(values) > 1:
        raise GatewayError.invalid_argument(f"invalid parameter {DRY_RUN!r}: given more than once")
    if not values:
        return False
    text = values[0].strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise GatewayError.invalid_argument(
        f"invalid parameter {DRY_RUN!r}: expected true or false, got {values[0][:40]!r}"
    )


class JobDescriptionForm:
    """
    The JSON job description as a second form of C{POST /api/v1/jobs}.

    A body with C{spec} is the route's own and passes through unchanged (a dry run of it
    is refused rather than quietly launched: there is nothing to convert).
    """

    query_params: Sequence[str] = (DRY_RUN,)
    schema_name: str = DESCRIPTION_SCHEMA_NAME

    def claims(self, body: Mapping[str, Any]) -> bool:
        """Whether C{body} is a description rather than C{{"spec": ...}}."""
        return "spec" not in body and bool(_DESCRIPTION_MARKS & set(body))

    def prepare(self, body: Mapping[str, list[Any]], query: Mapping[str, list[str]]) -> Prepared:
        """C{{"spec": [xml]}} to launch, or the dry run's answer."""
        dry_run = _dry_run(query, self.query_params)
        if not self.claims(body):
            if dry_run:
                raise GatewayError.invalid_argument(
                    f"{DRY_RUN} applies to a JSON job description, not to a spec"
                )
            return Prepared(body)
        description = {name: values[-1] for name, values in body.items()}
        try:
            xml = job_spec_xml(description)
        except DescriptionError as error:
            raise description_error(error.errors) from None
        if dry_run:
            answer = json.dumps({"spec": xml}, ensure_ascii=False, separators=(",", ":"))
            return Prepared(body, answer.encode("utf-8"))
        return Prepared({"spec": [xml]})

    def schemas(self) -> dict[str, dict[str, Any]]:
        """The description's schemas: the job, its layers, their dependencies."""
        return description_schemas()

    def parameters(self) -> list[dict[str, Any]]:
        """C{dry_run}."""
        return [
            {
                "name": DRY_RUN,
                "in": "query",
                "required": False,
                "description": "With a JSON job description: answer the job-spec XML "
                '(`{"spec": "<xml>"}`) instead of launching the job.',
                "schema": {"type": "boolean", "default": False},
            }
        ]

    def answer_schema(self) -> dict[str, Any]:
        """The dry run's C{{"spec": "<xml>"}}."""
        return {
            "type": "object",
            "title": "A dry run's job spec",
            "required": ["spec"],
            "properties": {"spec": {"type": "string", "description": "The job-spec XML."}},
        }


JOB_DESCRIPTION = JobDescriptionForm()
