"""
Jobs submitted as JSON: a job description is checked field by field
(L{opencue_gw.jobs.description}), written as the job-spec XML pyoutline writes
(L{opencue_gw.jobs.specxml}), and accepted by C{POST /api/v1/jobs} as a second form of
its body (L{opencue_gw.jobs.form}), with its JSON Schema in the OpenAPI document
(L{opencue_gw.jobs.schema}).
"""

from opencue_gw.jobs.description import (
    DescriptionError,
    FieldError,
    JobDescription,
    LayerDescription,
    read_description,
    validate,
)
from opencue_gw.jobs.form import JOB_DESCRIPTION, BodyForm, JobDescriptionForm, Prepared
from opencue_gw.jobs.schema import DESCRIPTION_SCHEMA_NAME, description_schemas
from opencue_gw.jobs.specxml import DOCTYPE, SPEC_VERSION, job_spec_xml, spec_xml

__all__ = [
    "DESCRIPTION_SCHEMA_NAME",
    "DOCTYPE",
    "JOB_DESCRIPTION",
    "SPEC_VERSION",
    "BodyForm",
    "DescriptionError",
    "FieldError",
    "JobDescription",
    "JobDescriptionForm",
    "LayerDescription",
    "Prepared",
    "description_schemas",
    "job_spec_xml",
    "read_description",
    "spec_xml",
    "validate",
]
