"""The typed wire formats name the same fields as the published contracts in schemas/."""

from __future__ import annotations

import json
from typing import Any, NotRequired, get_origin, get_type_hints

import pytest
import yaml

import schemas
from pipeline.entries import AnomalyEntry, BaselineHash, DeadLetterMeta, DirtyEntry, IncidentEntry
from pipeline.events import TraceEntry
from services.checks import CheckBatchRequest, CheckRequest
from services.incidents import IncidentJson
from services.views import BaselineJson, BucketJson, ThresholdJson, VerdictJson

STREAMS = json.loads(schemas.read_text("streams.schema.json"))["$defs"]
TRACE_EVENT = json.loads(schemas.read_text("trace_event.schema.json"))
OPENAPI = yaml.safe_load(schemas.read_text("openapi.yaml"))["components"]["schemas"]


def keys(typed: Any) -> tuple[set[str], set[str]]:
    """(every key, the required keys) of a TypedDict. Read from the resolved hints: with
    postponed annotations, Python 3.11's __required_keys__ misses NotRequired."""
    hints = get_type_hints(typed, include_extras=True)
    optional = {name for name, hint in hints.items() if get_origin(hint) is NotRequired}
    return set(hints), set(hints) - optional


@pytest.mark.parametrize(("typed", "schema"), [
    (TraceEntry, TRACE_EVENT),
    (DirtyEntry, STREAMS["dirty"]),
    (BaselineHash, STREAMS["baseline"]),
    (CheckRequest, OPENAPI["CheckRequest"]),
    (BucketJson, OPENAPI["Bucket"]),
    (BaselineJson, OPENAPI["Baseline"]),
    (ThresholdJson, OPENAPI["Threshold"]),
    (VerdictJson, OPENAPI["Verdict"]),
    (IncidentEntry, STREAMS["incident"]),
    (IncidentJson, OPENAPI["Incident"]),
])
def test_a_typed_format_and_its_schema_name_the_same_fields(typed: Any, schema: dict) -> None:
    every, required = keys(typed)
    assert every == set(schema["properties"])
    assert required == set(schema["required"])


@pytest.mark.parametrize(("typed", "schema"), [
    (AnomalyEntry, STREAMS["anomaly"]), (DeadLetterMeta, STREAMS["dead"]),
])
def test_entries_with_open_schemas_require_what_the_schema_requires(typed: Any,
                                                                   schema: dict) -> None:
    every, required = keys(typed)
    assert every == required == set(schema["required"])


def test_the_batch_request_holds_check_requests() -> None:
    assert keys(CheckBatchRequest) == ({"traces"}, {"traces"})
