"""The OpenAPI document: what the routes declare, and what only the gateway's settings know (the models it offers),
so that every request the document allows is one the gateway takes, the file's content aside (the upload operations'
descriptions state that rule)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import compile_path

from kubescribe.gateway.intake.upload import FILE_FIELD
from kubescribe.gateway.routes.openai_views import OPENAI_MODEL
from kubescribe.gateway.routes.schemas import BatchSources, JobOptions
from kubescribe.gateway.settings import GatewaySettings

SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "An API key, or a Kubernetes token."},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "An API key."},
}
FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")
"""FastAPI documents a 422 of its own; the gateway answers invalid requests 400, in its error shape."""


def multilingual(models: list[str]) -> list[str]:
    return [model for model in models if not model.endswith(".en")]


def form_models(settings: GatewaySettings) -> dict[str, list[str]]:
    """The `model` each upload operation's form takes, by path: on /v1/jobs the offered models (empty: the default),
    on /v1/audio/* whisper-1 too, and for translations only multilingual models."""
    return {
        "/v1/jobs": ["", *settings.models],
        "/v1/batches": ["", *settings.models],
        "/v1/audio/transcriptions": [OPENAI_MODEL, *settings.models],
        "/v1/audio/translations": [OPENAI_MODEL, *multilingual(settings.models)],
    }


def translation_rule(settings: GatewaySettings) -> list[dict[str, Any]] | None:
    """/v1/jobs' and /v1/batches' options: a translation names a multilingual model, unless the default model is one
    (the API's TRANSLATE_NEEDS_MULTILINGUAL)."""
    if not settings.default_model.endswith(".en"):
        return None
    return [
        {"properties": {"task": {"const": "transcribe"}}},
        {"properties": {"model": {"enum": multilingual(settings.models)}}, "required": ["model"]},
    ]


def batch_bodies(settings: GatewaySettings) -> dict[str, dict[str, Any]]:
    """POST /v1/batches' two bodies, as schemas: a form of files and options, and a JSON object of sources and
    options; at most `max_batch_files` of either."""
    form = JobOptions.model_json_schema()
    form["title"] = "BatchUpload"
    form["properties"][FILE_FIELD] = {
        "type": "array",
        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
        "minItems": 1,
        "maxItems": settings.max_batch_files,
        "description": "The audio files, one part each: any format ffmpeg decodes.",
    }
    form["required"] = [FILE_FIELD]
    sources = BatchSources.model_json_schema()
    sources["properties"]["sources"]["maxItems"] = settings.max_batch_files
    return {"BatchUpload": form, "BatchSources": sources}


def openapi_document(app: FastAPI, settings: GatewaySettings) -> dict[str, Any]:
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document["components"]["schemas"]
    for name in FASTAPI_VALIDATION_SCHEMAS:
        schemas.pop(name, None)
    document["components"]["securitySchemes"] = SECURITY_SCHEMES
    bodies = batch_bodies(settings)
    schemas.update(bodies)
    batch = document["paths"]["/v1/batches"]["post"]["requestBody"]["content"]
    batch["multipart/form-data"] = {"schema": {"$ref": "#/components/schemas/BatchUpload"}}
    batch["application/json"] = {"schema": {"$ref": "#/components/schemas/BatchSources"}}
    models, rule = form_models(settings), translation_rule(settings)
    for path, operations in document["paths"].items():
        for operation in operations.values():
            operation["responses"].pop("422", None)
            if "401" in operation["responses"]:
                operation["security"] = [{name: []} for name in SECURITY_SCHEMES]
            for body in operation.get("requestBody", {}).get("content", {}).values():
                fields = schemas[body["schema"]["$ref"].removeprefix("#/components/schemas/")]
                fields["properties"]["model"]["enum"] = models[path]
                if path in ("/v1/jobs", "/v1/batches") and rule is not None:
                    fields["anyOf"] = rule
    return document


def allowed_methods(paths: Mapping[str, Mapping[str, Any]], path: str) -> str | None:
    """The methods the document's `paths` give `path`, as a 405's Allow header has them; None for another path."""
    for template, operations in paths.items():
        if compile_path(template)[0].match(path):
            return ", ".join(sorted(method.upper() for method in operations))
    return None
