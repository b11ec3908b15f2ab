"""OpenAPI additions: the request bodies parsed by hand (multipart or JSON), descry's error responses
declared per operation (from what each route can answer), and links from a submission to its job."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from descry.api.bodies import BatchSources, CaptionOptions, CaptionSource, JobSources, SeedCaptionJSON
from descry.api.compat_bodies import COMPAT_BODIES
from descry.api.deps import get_batches, get_jobs, get_service
from descry.api.errors import OLLAMA_PATHS
from descry.api.security import PROBE_PATHS, ScopeCheck
from descry.config import Settings

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
        *((model, "validation") for model in COMPAT_BODIES),
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
            "files": {"type": "array", "items": BINARY, "minItems": 1, "description": "the images"},
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
                "type": {"type": "string", "description": "OpenAI's error type (/v1/chat/completions only)"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "OpenAI's param"},
            },
        },
        "detail": {"type": "string", "description": "the message again, for clients of the replaced services"},
        "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
    },
}


OLLAMA_ERROR: dict[str, Any] = {
    "title": "OllamaErrorResponse",
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "request_id": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
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


ERROR_DESCRIPTIONS = {
    400: "The request or an image could not be read",
    401: "An API key is required, or the key is not valid",
    403: "The key lacks the scope, or the source is not allowed",
    404: "No such job, batch or source",
    408: "The request body did not arrive in time",
    413: "The body, an image or the batch is too large",
    415: "The content type or the image format is not supported",
    422: "The request is not valid",
    429: "Too many requests; retry after the Retry-After seconds",
    500: "An unexpected server error (logged with the request id)",
    502: "A remote model or a delivery failed",
    503: "The model (or the job store) is not ready; retry after the Retry-After seconds",
}
RETRY_AFTER = {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}
SERVICE_DEPS = (get_service, get_jobs, get_batches)  # routes that need the model or the job store: 503


def _calls(dependant: Dependant) -> list[Any]:
    """Every dependency callable of a route, nested ones included."""
    found: list[Any] = []
    for dep in dependant.dependencies:
        found.append(dep.call)
        found.extend(_calls(dep))
    return found


def route_errors(route: Any, operation: dict[str, Any], settings: Settings) -> set[int]:
    """The error statuses one operation can answer with, from its route's shape and the settings."""
    security = settings.security
    calls = _calls(route.dependant)
    statuses = {500}
    if operation.get("parameters") or "requestBody" in operation:
        statuses.add(422)
    if "requestBody" in operation:
        statuses |= {400, 408, 413, 415}
    if "{" in route.path_format:
        statuses.add(404)
    keys = bool(security.api_keys)
    checks = [call for call in calls if isinstance(call, ScopeCheck)]
    if keys and any(c.public is None or not getattr(security, f"public_{c.public}") for c in checks):
        statuses |= {401, 403}
    serves = any(call in SERVICE_DEPS for call in calls)
    probe = route.path_format in PROBE_PATHS
    if serves or (not probe and (security.client_rate > 0 or (keys and security.key_rate > 0))):
        statuses.add(429)
    if serves and "requestBody" in operation:
        statuses |= {403, 404}  # sources the server reads (paths, URLs, S3 prefixes)
    if "requestBody" in operation and route.path_format in OLLAMA_PATHS:
        statuses.add(404)  # a model name the server does not serve
    if get_service in calls:
        statuses.add(502)  # a remote model or a sink's delivery
    if serves or route.path_format == "/ready":
        statuses.add(503)
    return statuses


def _error_response(status: int, body: str = "ErrorResponse") -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": ERROR_DESCRIPTIONS[status],
        "content": {"application/json": {"schema": _ref(body)}},
    }
    if status in (429, 503):
        response["headers"] = {"Retry-After": RETRY_AFTER}
    return response


def declare_errors(app: FastAPI, schema: dict[str, Any], settings: Settings) -> None:
    """Declare each operation's error responses (all ``ErrorResponse``), walking the app's routes."""
    for route in iter_route_contexts(app.routes):  # included routers' routes, with their dependencies
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        operations = schema.get("paths", {}).get(route.path_format, {})
        for method in route.methods or ():
            operation = operations.get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            body = "OllamaErrorResponse" if route.path_format in OLLAMA_PATHS else "ErrorResponse"
            for status in sorted(route_errors(route, operation, settings)):
                responses[str(status)] = _error_response(status, body)


def _properties(schema: dict[str, Any], response: dict[str, Any]) -> set[str]:
    body = response.get("content", {}).get("application/json", {}).get("schema", {})
    ref = body.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        body = schema["components"]["schemas"].get(ref.rsplit("/", 1)[1], {})
    return set(body.get("properties", {}))


def add_links(schema: dict[str, Any]) -> None:
    """Link each POST's success response to the operations below its path that take the new id
    (POST /v1/jobs → GET/DELETE /v1/jobs/{job_id}, its results; the async batch → its status)."""
    paths: dict[str, Any] = schema.get("paths", {})
    for path, operations in paths.items():
        post = operations.get("post")
        success = (
            next((r for code, r in post.get("responses", {}).items() if code.startswith("2")), None) if post else None
        )
        if success is None:
            continue
        fields = _properties(schema, success)
        for target, targets in paths.items():
            params = [
                p["name"]
                for p in targets.get("get", targets.get("delete", {})).get("parameters", [])
                if p.get("in") == "path"
            ]
            if not target.startswith(path + "/") or len(params) != 1:
                continue
            field = params[0] if params[0] in fields else "id"
            if field not in fields:
                continue
            for operation in targets.values():
                if "operationId" in operation:
                    success.setdefault("links", {})[operation["operationId"]] = {
                        "operationId": operation["operationId"],
                        "parameters": {params[0]: f"$response.body#/{field}"},
                    }


def _min_files(schemas: dict[str, Any]) -> None:
    """A multipart ``files`` list (FastAPI's generated upload bodies too) needs at least one file."""
    for body in schemas.values():
        files = body.get("properties", {}).get("files") if isinstance(body, dict) else None
        if isinstance(files, dict) and files.get("type") == "array":
            files.setdefault("minItems", 1)


def install_openapi(app: FastAPI) -> None:
    """Add the hand-documented request bodies, the error envelope and the links to the generated schema."""
    generate = app.openapi
    settings: Settings = app.state.settings

    def openapi() -> dict[str, Any]:
        schema = generate()
        if "ErrorResponse" in schema.get("components", {}).get("schemas", {}):
            return schema  # FastAPI caches the document; patched already
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for name, body in component_schemas().items():
            schemas.setdefault(name, body)
        schemas["ErrorResponse"] = ERROR_RESPONSE
        schemas["OllamaErrorResponse"] = OLLAMA_ERROR
        _error_responses(schema)
        declare_errors(app, schema, settings)
        _min_files(schemas)
        add_links(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
