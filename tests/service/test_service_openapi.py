"""Property-based tests of the API against its own OpenAPI document (schemathesis).

Generated requests — valid and invalid, events included — must never get a 500, every answer
must match the document, and every error must have the one error shape. Bounded: a few examples
per operation, so the whole file runs in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from conftest import add_key, add_user
from fastapi import FastAPI
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from brokerguard.service.api import ROUTERS
from brokerguard.service.app import create_app

EXAMPLES = 12
schemathesis.serializer.alias("application/toml", "text/plain")  # PUT /v1/policy takes TOML


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'service.db'}"
    key = add_key(url, "decide", "ingest", "read", "admin")
    add_user(url, "ana", "analyst")
    app = create_app(url)
    yield app, key
    asgi.shutdown_lifespans()  # schemathesis keeps the app's lifespan running until told


@pytest.fixture(scope="module")
def api_schema(served: tuple[FastAPI, str]) -> schemathesis.BaseSchema:
    app, _key = served
    schema = schemathesis.openapi.from_dict(app.openapi())
    schema.app = app  # type: ignore[attr-defined]
    return schema


# (method, path) of every documented operation, known without building an app; schemathesis'
# own pytest integration does not run on this pytest, so each operation is a parametrized test
# that draws its cases from the operation's strategy.
ROUTES = [
    route
    for router in ROUTERS
    for route in router.routes
    if isinstance(route, APIRoute) and route.include_in_schema
]
OPERATIONS = sorted((method, route.path_format) for route in ROUTES for method in route.methods)


def takes_input(route: APIRoute) -> bool:
    params = get_flat_params(route.dependant)
    return bool(params or route.body_field or (route.openapi_extra or {}).get("requestBody"))


# Negative cases need something to make invalid: operations without parameters or a body
# (GET /healthz, GET /v1/policy, ...) are tested with valid requests only.
CASES = [
    (method, route.path_format, mode)
    for route in ROUTES
    for method in sorted(route.methods)
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or takes_input(route)
]


def error_shape(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> None:
    """Every 4xx answer is ``{"error": {"code", "message", "message_ja", "field"}}``."""
    if response.status_code < 400:
        return
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["message_ja"], str) and error["message_ja"]
    assert "field" in error and (error["field"] is None or isinstance(error["field"], str))


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    error_shape,
]


@pytest.mark.parametrize(("method", "path", "mode"), CASES)
def test_api_keeps_its_document(
    api_schema: schemathesis.BaseSchema,
    served: tuple[FastAPI, str],
    method: str,
    path: str,
    mode: GenerationMode,
) -> None:
    _app, key = served
    operation = api_schema[path][method]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers={"Authorization": f"Bearer {key}"}, checks=CHECKS)

    check()


def test_the_document_names_every_event_kind(api_schema: schemathesis.BaseSchema) -> None:
    doc = api_schema.raw_schema
    event = doc["components"]["schemas"]["Event"]
    kinds = {ref["$ref"].rsplit("/", 1)[1] for ref in event["anyOf"]}
    assert {"LoginAttempt", "Order", "Withdrawal", "SettingsChange", "MarketBar"} <= kinds
    assert doc["paths"]["/v1/decide"]["post"]["requestBody"]["content"]["application/json"]
    documented = {(m.upper(), p) for p, item in doc["paths"].items() for m in item}
    assert documented == set(OPERATIONS)


def test_the_log_in_documents_its_throttle(api_schema: schemathesis.BaseSchema) -> None:
    """A throttled log-in answers 429 (tests/service/test_service_auth.py); schemathesis met it
    against a running service as an undocumented status."""
    responses = api_schema.raw_schema["paths"]["/console/login"]["post"]["responses"]
    assert "429" in responses and "401" in responses
