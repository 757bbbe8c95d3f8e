"""HTTP's errors in the OpenAI shape: {"error": {"message", "type", "param", "code"}}.

Open WebUI shows `error.message` only when `error` is an object, and a caller's mistake must be a
4xx, never a 500, so every failure path of the API ends here: a domain error (gateway/errors.py,
the scheduler's refusals among them) gets its status from its kind; `APIError` is for what only
HTTP has (a missing key, an upload over the limit). Also the OpenAPI document's error schema.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import GatewayError, as_domain
from ..traffic import STATUS  # kind -> HTTP status: one map for every door's answers and counts

log = logging.getLogger(__name__)


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(
        error_body(exc.message, exc.type, exc.param, exc.code), exc.status, headers=exc.headers
    )


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, "invalid_request_error", param, code)


def from_domain(exc: GatewayError) -> APIError:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return APIError(STATUS[exc.kind], exc.message, exc.type, exc.param, exc.code, headers)


def as_api_error(exc: Exception) -> APIError:
    """Any exception as the APIError its handler below would answer (500 for the unknown)."""
    if isinstance(exc, APIError):
        return exc
    return from_domain(as_domain(exc))


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    first: dict[str, Any] = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header", "form")]
    param = ".".join(loc) or None
    msg = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    if first.get("type") == "missing":
        return f"missing required parameter: {param}", param
    if first.get("type") in ("model_attributes_type", "model_type", "dict_type") and not param:
        return "the request body must be a JSON object (Content-Type: application/json)", None
    if "Expected UploadFile" in str(msg):
        return f"{param} must be a file part of a multipart/form-data body", param
    return f"invalid value for {param}: {msg}" if param else msg, param


def install(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    @app.exception_handler(GatewayError)
    async def _known(_: Request, exc: Exception) -> JSONResponse:
        return error_response(as_api_error(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return error_response(bad_request(message, param))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(
            exc.status_code
        )
        return JSONResponse(
            error_body(str(exc.detail), kind, None, code),
            exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(as_api_error(exc))

    _document(app)


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "code": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            },
        }
    },
}


def _document(app: FastAPI) -> None:
    """Make the OpenAPI document say what these handlers do: a validation error is a 400 (never
    FastAPI's 422) and every error body is the OpenAI error object; key-protected routes may
    answer 401 (keys optional when none are configured); request bodies may get 413."""
    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = base()
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        schemas["Error"] = ERROR_SCHEMA
        ref = {"$ref": "#/components/schemas/Error"}
        keys = bool(getattr(app.state, "api_keys", None))
        for ops in doc.get("paths", {}).values():
            for op in ops.values():
                responses = op.setdefault("responses", {})
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", {"description": "Invalid request"})
                if op.get("security"):
                    responses.setdefault("401", {"description": "Missing or invalid API key"})
                    if not keys:  # no keys configured: the key is not checked
                        op["security"] = [*op["security"], {}]
                if "requestBody" in op:
                    responses.setdefault(
                        "413", {"description": "Request body larger than the limit"}
                    )
                for status, response in responses.items():
                    if status[0] in "45" and not response.get("content"):
                        response["content"] = {"application/json": {"schema": ref}}
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
