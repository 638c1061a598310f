"""OpenAI-style JSON errors: every failure is ``{"error": {message, type, param, code}}`` with its status."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from promptlearning.errors import PromptLearningError, PromptTooLongError, UnsupportedOperationError
from promptlearning.prompts.sandbox import TemplateError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    499: "client_closed_request",
    500: "server_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An error answered as an OpenAI-style JSON object with ``status``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers or {}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param, "code": code}
    }


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(error_body(status, message, param, code), status_code=status, headers=headers)


def from_library_error(exc: PromptLearningError) -> APIError:
    """A library error caused by the request: 400, with the library's own message (they say what to do)."""
    code = None
    if isinstance(exc, PromptTooLongError):
        code = "context_length_exceeded"
    elif isinstance(exc, TemplateError):
        code = "invalid_template"
    elif isinstance(exc, UnsupportedOperationError):
        code = "unsupported"
    return APIError(400, str(exc), code=code)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception to a JSON error; unexpected ones are a 500 without a stack trace."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)

    from promptlearning.serving.batching import QueueFullError, RequestCancelled, ShuttingDownError, WorkerStoppedError
    from promptlearning.serving.requests import ClientDisconnected

    @app.exception_handler(ClientDisconnected)
    @app.exception_handler(RequestCancelled)
    async def _client_gone(request: Request, exc: Exception) -> JSONResponse:
        # Nobody reads this answer; 499 (nginx's "client closed request") is what the log and metrics show.
        return error_response(499, "the client closed the request before its answer was ready")

    @app.exception_handler(WorkerStoppedError)
    async def _worker_stopped(request: Request, exc: WorkerStoppedError) -> JSONResponse:
        return error_response(503, str(exc))

    @app.exception_handler(QueueFullError)
    async def _queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return error_response(429, str(exc), code="queue_full", headers={"Retry-After": "1"})

    @app.exception_handler(ShuttingDownError)
    async def _shutting_down(request: Request, exc: ShuttingDownError) -> JSONResponse:
        return error_response(503, str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(PromptLearningError)
    async def _library_error(request: Request, exc: PromptLearningError) -> JSONResponse:
        api = from_library_error(exc)
        return error_response(api.status, api.message, code=api.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        if first.get("type") == "value_error" and not where:  # a check of the whole body
            return error_response(400, message)
        if first.get("type") == "json_invalid":
            message = f"malformed JSON body: {first.get('ctx', {}).get('error', message)}"
        elif tuple(first.get("loc", ())) == ("body",):
            message = "the request body must be a JSON object (send Content-Type: application/json)"
            return error_response(400, message)
        elif where:
            message = f"{where}: {message}"
        return error_response(422 if first.get("type") != "json_invalid" else 400, message, param=where or None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        request.app.state.logger.exception("unexpected error", extra={"request_id": request.state.request_id})
        return error_response(500, f"internal error ({type(exc).__name__}); the server log has the details")
