"""The FastAPI application: middleware (request ids, limits, keys, metrics, access logs, draining),
operations endpoints, and the OpenAI-compatible and task routers."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse
from starlette.datastructures import MutableHeaders

from promptlearning.serving import openai, task_api
from promptlearning.serving.auth import SESSION_COOKIE, UI_HEADER, BrowserSessions, KeyStore, RateLimiter, bearer_token
from promptlearning.serving.batching import Batcher
from promptlearning.serving.errors import APIError, error_response, install_error_handlers
from promptlearning.serving.observability import ServerMetrics, mask_sensitive, server_logger
from promptlearning.serving.served import ServedModels
from promptlearning.serving.settings import ServerSettings

OPEN_PATHS = ("/health", "/ready", "/metrics")  # answered without a key (probes and scrapers)
UI_OPEN_PREFIXES = ("/ui/login", "/ui/logout", "/ui/static/")  # signing in and out, the style sheet and script


class _BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is a 413 before the application reads it all
    (by ``Content-Length`` when given, else while it streams in)."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await error_response(413, self._message())(scope, receive, send)
            return
        # The body is read here (it is at most ``limit`` bytes) and replayed to the application.
        chunks, seen, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            more = message.get("more_body", False)
            if seen > self.limit:
                await error_response(413, self._message())(scope, receive, send)
                return
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _message(self) -> str:
        return f"request body over this server's limit of {self.limit} bytes"


def create_app(settings: ServerSettings, served: ServedModels | None = None) -> FastAPI:
    """The application for ``settings``; ``served`` is loaded in the background when not given
    (``/ready`` answers 503 until it is)."""
    app = FastAPI(
        title="promptlearning",
        summary="OpenAI-compatible and prompt-learning endpoints",
        lifespan=_lifespan,
        docs_url="/docs",
    )
    metrics = ServerMetrics()
    state = app.state
    state.settings, state.logger, state.metrics = settings, server_logger(), metrics
    state.batcher = Batcher(
        max_batch_size=settings.max_batch_size,
        wait_seconds=settings.batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        on_batch=metrics.batch_size.observe,
    )
    state.load_in_background = served is None
    state.served = served if served is not None else ServedModels()
    state.keys = None if settings.no_auth else KeyStore(settings.api_key, settings.api_keys_file)
    state.sessions = BrowserSessions()
    state.limiter = RateLimiter(settings.requests_per_minute, settings.tokens_per_minute)
    state.draining = False
    state.worker_failed = False
    state.on_worker_failure = None  # called if the model worker stops (serve: exit non-zero)
    state.in_flight = 0
    state.admitted = 0  # POST requests past the gate (see _admitted)
    state.started = int(time.time())
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(task_api.router)
    from promptlearning.ui import ui_router  # the UI imports serving's auth and errors

    app.include_router(ui_router(settings.ui_runs))
    _operations(app)
    app.add_middleware(_Gatekeeper)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> Any:
    state = app.state
    if state.load_in_background:
        threading.Thread(target=_load_served, args=(app,), daemon=True, name="promptlearning-load").start()
    watch = asyncio.ensure_future(_watch_worker(app))
    yield
    watch.cancel()
    state.draining = True
    state.batcher.stop(timeout=min(5.0, state.settings.shutdown_grace_seconds))


def _load_served(app: FastAPI) -> None:
    """Loads the served models and programs (in a thread, so that ``/health`` answers meanwhile)."""
    settings, logger = app.state.settings, app.state.logger
    try:
        app.state.served = ServedModels.load(
            model=settings.model,
            served_name=settings.served_model_name,
            backend=settings.backend,
            device=settings.device,
            dtype=settings.dtype,
            embedding_model=settings.embedding_model,
            programs=settings.program,
        )
        logger.info("ready", extra={"kind": "startup"})
    except Exception as exc:  # reported by /ready and every request
        app.state.served.error = f"{type(exc).__name__}: {exc}"
        app.state.served.loaded.set()
        logger.exception("loading failed", extra={"kind": "startup"})


class _Gatekeeper:
    """ASGI middleware around every HTTP request: an id, the gate (draining, key, readiness, rate,
    admission), metrics and one access-log line. Plain ASGI rather than Starlette's
    ``BaseHTTPMiddleware``, whose ``call_next`` returns when the answer's headers are sent: a streamed
    answer is admitted, in flight and timed here until its last byte."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        state = request.app.state
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id, request.state.key = request_id, "open"
        request.state.content = request.state.output = None
        request.state.cancel = threading.Event()  # set when the client goes away (see requests.py)
        status = 500  # unless a response starts: an exception escaped to Starlette's error middleware

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        start = time.perf_counter()
        state.in_flight += 1
        try:
            await _guarded(request, self.app, send_with_id)
        finally:
            state.in_flight -= 1
            _record(request, status, time.perf_counter() - start)


def _record(request: Request, status: int, seconds: float) -> None:
    """A finished request's metrics and access-log line."""
    state = request.app.state
    endpoint = getattr(request.scope.get("route"), "path", "other")
    state.metrics.requests.labels(endpoint, str(status)).inc()
    state.metrics.latency.labels(endpoint, str(status)).observe(seconds)
    state.metrics.waiting.set(state.batcher.waiting)
    state.metrics.running.set(state.batcher.running)
    _log_request(request, status, seconds)


def _log_request(request: Request, status: int, seconds: float) -> None:
    state = request.app.state
    extra = {
        "request_id": request.state.request_id,
        "method": request.method,
        "path": request.url.path,
        "status": status,
        "duration_ms": round(seconds * 1000, 1),
        "key": request.state.key,
        "client": request.client.host if request.client else None,
    }
    if state.settings.log_content and request.state.content is not None:
        extra["content"] = mask_sensitive(repr({"input": request.state.content, "output": request.state.output}))
    state.logger.info("request", extra=extra)


async def _guarded(request: Request, app: Any, send: Callable) -> None:
    """Pass open paths on; answer a request the gate refuses; the others pass (POSTs through
    admission control)."""
    path = request.url.path
    if path in OPEN_PATHS or path.startswith(UI_OPEN_PREFIXES):
        await app(request.scope, request.receive, send)
        return
    refusal = _refusal(request)
    if refusal is not None:
        await refusal(request.scope, request.receive, send)
    elif request.method == "POST":
        await _admitted(request, app, send)
    else:
        await app(request.scope, request.receive, send)


def _refusal(request: Request) -> Response | None:
    """Why a request to a guarded path is not answered (draining, no key, not ready, over its rate), or None."""
    state, path = request.app.state, request.url.path
    if state.draining:
        return error_response(503, "the server is shutting down", headers={"Retry-After": "5"})
    if state.keys is not None:
        key = _identify(request)
        if key is None:
            if path.startswith("/ui") and request.method == "GET":  # a page: sign in first, then come back
                target = path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/ui/login?next={quote(target, safe='')}", status_code=303)
            return error_response(
                401, "missing or invalid API key: send 'Authorization: Bearer KEY'", code="invalid_api_key"
            )
        request.state.key = key
    # the UI's run pages need no model: they answer while it loads
    if not state.served.ready and not path.startswith(("/docs", "/openapi", "/ui")):
        why = f"loading failed: {state.served.error}" if state.served.error else "the model is still loading"
        return error_response(503, why, headers={"Retry-After": "5"})
    try:
        state.limiter.charge_request(request.state.key)
    except APIError as exc:
        return error_response(exc.status, exc.message, code=exc.code, headers=exc.headers)
    return None


def _identify(request: Request) -> str | None:
    """The key id of a request: its bearer key, or the web UI's session cookie. A cookie alone
    does not authorise a POST: the UI's scripts add a header that a cross-site form cannot send."""
    state = request.app.state
    presented = bearer_token(request.headers.get("authorization"))
    if presented is not None:
        return state.keys.identify(presented)
    key = state.sessions.identify(request.cookies.get(SESSION_COOKIE))
    if key is not None and request.method not in ("GET", "HEAD") and request.headers.get(UI_HEADER) != "1":
        return None
    return key


async def _admitted(request: Request, app: Any, send: Callable) -> None:
    # Admission control: requests wait for worker threads before they reach the batcher's
    # queue, so the queue alone does not bound them; past a running batch plus a full queue
    # of requests, answer 429 at once instead of letting waits grow without bound.
    state = request.app.state
    capacity = state.settings.max_queue + state.settings.max_batch_size
    if state.admitted >= capacity:
        refusal = error_response(
            429,
            f"{state.admitted} requests are in progress, the most this server holds; retry shortly",
            code="queue_full",
            headers={"Retry-After": "1"},
        )
        await refusal(request.scope, request.receive, send)
        return
    state.admitted += 1
    try:
        await app(request.scope, request.receive, send)
    finally:
        state.admitted -= 1


async def _watch_worker(app: FastAPI, every: float = 0.25) -> None:
    """If the model worker ever stops, the server must not look ready while it cannot answer:
    ``/ready`` answers 503 at once (it reads the worker), and ``app.state.on_worker_failure`` (set by
    whoever runs the server) ends the process so that a supervisor restarts it."""
    state = app.state
    while state.batcher.alive or state.draining:
        await asyncio.sleep(every)
    if state.draining:
        return
    state.worker_failed = True
    state.logger.critical("the model worker stopped: exiting", extra={"kind": "fatal", "why": state.batcher.failure})
    if state.on_worker_failure is not None:
        state.on_worker_failure()


def _operations(app: FastAPI) -> None:
    @app.get("/health")
    async def health() -> dict[str, str]:
        """Alive (answers even while the model loads)."""
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        """200 once every model and program is loaded; 503 before (or when loading failed)."""
        served = request.app.state.served
        if request.app.state.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        batcher = request.app.state.batcher
        if not batcher.alive:
            return JSONResponse({"status": f"model worker stopped: {batcher.failure}"}, status_code=503)
        if not served.ready:
            status = f"loading failed: {served.error}" if served.error else "loading"
            return JSONResponse({"status": status}, status_code=503)
        return JSONResponse(
            {"status": "ready", "models": [*served.text, *served.embedders], "programs": list(served.programs)}
        )

    @app.get("/metrics")
    async def prometheus(request: Request) -> PlainTextResponse:
        """Prometheus metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        state = request.app.state
        state.metrics.waiting.set(state.batcher.waiting)
        state.metrics.running.set(state.batcher.running)
        state.metrics.queue_capacity.set(state.batcher.max_queue)
        state.metrics.worker_up.set(1 if state.batcher.alive else 0)
        state.metrics.joined.set(state.batcher.joined)
        return PlainTextResponse(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
