"""OpenAPI for routes that accept either multipart uploads or JSON (parsed by hand, documented here)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from descry.api.bodies import BatchSources, CaptionOptions, CaptionSource, JobSources, SeedCaptionJSON

REF = "#/components/schemas/{model}"
BINARY = {"type": "string", "format": "binary"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def _form_fields() -> dict[str, Any]:
    """CaptionOptions as multipart text fields (lists comma-separated, params as a JSON string)."""
    props = CaptionOptions.model_json_schema(ref_template=REF)["properties"]
    props = {k: v for k, v in props.items() if k not in ("params", "sinks")}
    props["sinks"] = {"type": "string", "description": "comma-separated sink names, e.g. log,jsonl"}
    props["params"] = {
        "type": "string",
        "description": 'generation parameters as JSON, e.g. {"temperature": 0.7}',
    }
    return props


def component_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (CaptionSource, "validation"),
        (BatchSources, "validation"),
        (SeedCaptionJSON, "validation"),
        (JobSources, "validation"),
    ]
    _, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["CaptionUpload"] = {
        "title": "CaptionUpload",
        "type": "object",
        "required": ["file"],
        "properties": {"file": {**BINARY, "description": "the image"}, **_form_fields()},
    }
    schemas["BatchUpload"] = {
        "title": "BatchUpload",
        "type": "object",
        "required": ["files"],
        "properties": {
            "files": {"type": "array", "items": BINARY, "description": "the images"},
            **_form_fields(),
        },
    }
    schemas["SeedCaptionUpload"] = {
        "title": "SeedCaptionUpload",
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {**BINARY, "description": "the image"},
            "detailed": {"type": "boolean", "default": False},
            "use_gpt_oss": {
                "type": "boolean",
                "description": "polish with the LLM; unset: the server's setting",
            },
        },
    }
    return schemas


def either_body(multipart: str, json: str) -> dict[str, Any]:
    """``openapi_extra`` for a route taking multipart or JSON."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _ref(multipart)},
                "application/json": {"schema": _ref(json)},
            },
        }
    }


ERROR_RESPONSE: dict[str, Any] = {
    "title": "ErrorResponse",
    "type": "object",
    "required": ["error", "detail", "request_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "array", "items": {"type": "object"}, "description": "the first problems"},
                "omitted": {"type": "integer", "description": "problems not listed in details"},
            },
        },
        "detail": {"type": "string", "description": "the message again, for clients of the replaced services"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
}


def _error_responses(schema: dict[str, Any]) -> None:
    """FastAPI documents 422 as ``{"detail": [...]}``; descry answers with its error envelope."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            response = operation.get("responses", {}).get("422") if isinstance(operation, dict) else None
            if response is not None:
                response["content"] = {"application/json": {"schema": _ref("ErrorResponse")}}
    schemas = schema.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)


def install_openapi(app: FastAPI) -> None:
    """Add the hand-documented request bodies and the error envelope to the generated schema."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        if "ErrorResponse" in schema.get("components", {}).get("schemas", {}):
            return schema  # FastAPI caches the document; patched already
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in component_schemas().items():
            schemas.setdefault(name, body)
        schemas["ErrorResponse"] = ERROR_RESPONSE
        _error_responses(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
