"""The OpenAPI document: FastAPI's, plus the event schemas taken from the msgspec Structs.

``/v1/decide`` and ``/v1/events`` read events with msgspec (not pydantic), so FastAPI cannot
see their shape; :func:`event_components` asks msgspec for the JSON Schema of the event union,
and :func:`install_openapi` adds it under ``components/schemas`` (``Event`` is the tagged
union, each event kind its own schema), plus the pydantic models that routes reading their own
body refer to.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from brokerguard.events import Event
from brokerguard.service.schemas import LoginForm, LoginIn

__all__ = ["event_components", "install_openapi"]

REF = "#/components/schemas/{name}"
EXTRA_MODELS = (LoginIn, LoginForm)
"""Models referenced only from ``openapi_extra`` (routes that read their body themselves)."""


def event_components() -> dict[str, Any]:
    (schema,), components = msgspec.json.schema_components((Event,), ref_template=REF)
    return {"Event": schema, **components}


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            extra = {
                m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}")
                for m in EXTRA_MODELS
            }
            for name, schema in {**event_components(), **extra}.items():
                if name in schemas:
                    raise RuntimeError(f"OpenAPI schema name {name!r} used twice")
                schemas[name] = schema
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
