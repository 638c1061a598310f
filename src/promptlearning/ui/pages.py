"""The UI's routes: the runs list, one run, a comparison, the playground, live progress and sign-in.

Pages are rendered on the server by Jinja2 with autoescaping (a prediction holding ``<script>`` shows
as text); the playground's script calls the server's own API (``/v1/classify``, ``/v1/completions``
with echo and log-probabilities, ``/v1/programs``) plus the two helpers here that render a prompt
and export a task file.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import jinja2
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from promptlearning.errors import PromptLearningError
from promptlearning.serving.auth import SESSION_COOKIE
from promptlearning.serving.errors import APIError
from promptlearning.ui.catalog import SEARCH_FILE, RunPathError, RunsRoot, choose_part, own_file
from promptlearning.ui.comparison import check_run_count, compare_examples
from promptlearning.ui.examples import ORDERS, PredictionReader, page, paged
from promptlearning.ui.playground import ExportRequest, RenderRequest, export_task, render_prompt
from promptlearning.ui.report import render_markdown

RunId = Annotated[str, Query(max_length=1000, description="a run's path below the runs root")]
RunIds = Annotated[list[str] | None, Query(max_length=8)]
SearchText = Annotated[str, Query(max_length=200)]
PageNumber = Annotated[int, Query(alias="page", ge=1, le=10**6)]
UI_THREADS = 4  # worker threads the UI's pages may use at once
HERE = Path(__file__).resolve().parent
STATIC_FILES = {"ui.css": "text/css", "ui.js": "text/javascript", "playground.js": "text/javascript"}
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
)


def _number_text(value: Any) -> str:
    """A metric for a page: 4 decimals, whole numbers without them, '-' for none."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.4f}"
    return str(value)


_ENV.globals["zip"] = zip
_ENV.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}"
_ENV.filters["num"] = _number_text


def html(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the UI, with the headers that keep it to its own scripts and out of frames."""
    signed_in = request.app.state.keys is not None and request.state.key != "open"
    body = _ENV.get_template(template).render(signed_in=signed_in, **context)
    return HTMLResponse(body, status_code=status, headers={"Content-Security-Policy": _CSP, "X-Frame-Options": "DENY"})


# the pages load only their own scripts, styles and images
_CSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"


def error_page(request: Request, exc: PromptLearningError) -> HTMLResponse:
    status = exc.status if isinstance(exc, RunPathError) else 400
    return html(request, "error.html", status=status, title="Cannot show this", message=str(exc))


def ui_router(runs_root: str | Path) -> APIRouter:
    """The ``/ui`` routes over the runs under ``runs_root``."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    root, reader = RunsRoot(runs_root), PredictionReader()
    threads = asyncio.Semaphore(UI_THREADS)

    async def in_thread(function: Any, *args: Any) -> Any:
        """File reading off the event loop, on at most UI_THREADS worker threads: a flood of page
        requests waits here instead of taking the threads the API's requests need."""
        async with threads:
            return await run_in_threadpool(function, *args)

    @router.get("/")
    async def runs_list(request: Request) -> HTMLResponse:
        runs = await in_thread(root.runs)
        return html(request, "runs.html", runs=runs, root=str(root.root), title="Runs")

    @router.get("/run")
    async def run_page(request: Request, id: RunId, order: str = "worst", q: SearchText = "", wrong: bool = False,
                       page_number: PageNumber = 1, part: SearchText = "") -> HTMLResponse:  # fmt: skip
        try:
            if order not in ORDERS:
                raise PromptLearningError(f"order must be one of {', '.join(ORDERS)}, not {order!r}")
            view = await in_thread(_run_view, root, reader, id, order, q, wrong, page_number, part)
        except PromptLearningError as exc:
            return error_page(request, exc)
        return html(request, "run.html", title=id, **view)

    @router.get("/file")
    async def run_file(request: Request, run: RunId, name: Annotated[str, Query(max_length=200)]) -> Response:
        try:
            path = root.resolve(run)
            if name not in root.plots(path):
                raise RunPathError(f"{run!r} has no plot {name!r}", status=404)
        except RunPathError as exc:
            return error_page(request, exc)
        return FileResponse(path / name, headers={"Cache-Control": "no-cache"})

    @router.get("/compare")
    async def compare_page(request: Request, run: RunIds = None, disagree: bool = False,
                           page_number: PageNumber = 1) -> HTMLResponse:  # fmt: skip
        try:
            view = await in_thread(_compare_view, root, reader, run or [], disagree, page_number)
        except PromptLearningError as exc:
            return error_page(request, exc)
        return html(request, "compare.html", title="Compare", **view)

    @router.get("/progress")
    async def progress(id: RunId) -> JSONResponse:
        try:
            return JSONResponse(await in_thread(_progress, root, id))
        except RunPathError as exc:
            raise APIError(exc.status, str(exc), param="id") from None

    @router.get("/playground")
    async def playground(request: Request) -> HTMLResponse:
        return html(request, "playground.html", title="Playground")

    @router.post("/render")
    async def render(body: RenderRequest, request: Request) -> JSONResponse:
        return JSONResponse(await in_thread(render_prompt, request.app.state.served, body))

    @router.post("/export")
    async def export(body: ExportRequest) -> Response:
        text = export_task(body)
        return Response(text, media_type="application/yaml",
                        headers={"Content-Disposition": 'attachment; filename="playground-task.yaml"'})  # fmt: skip

    _sign_in_routes(router)

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC_FILES:
            raise APIError(404, f"no static file {name!r}")
        return FileResponse(HERE / "static" / name, media_type=STATIC_FILES[name],
                            headers={"Cache-Control": "no-cache"})  # fmt: skip

    return router


def _sign_in_routes(router: APIRouter) -> None:
    @router.get("/login")
    async def login_form(request: Request, next: Annotated[str, Query(max_length=2000)] = "/ui/") -> HTMLResponse:
        return html(request, "login.html", title="Sign in", next=_local(next), message="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        state = request.app.state
        state.limiter.charge_request(f"sign-in:{request.client.host if request.client else '?'}")
        form = await _form(request)
        key, next = form.get("key", "")[:500], form.get("next", "/ui/")[:2000]
        key_id = state.keys.identify(key.strip()) if state.keys is not None else "open"
        if key_id is None:
            return html(request, "login.html", status=401, title="Sign in", next=_local(next),
                        message="That key is not accepted by this server.")  # fmt: skip
        response = RedirectResponse(_local(next), status_code=303)
        if state.keys is not None:
            response.set_cookie(SESSION_COOKIE, state.sessions.open(key_id), httponly=True, samesite="strict",
                                secure=request.url.scheme == "https", path="/")  # fmt: skip
        return response

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        request.app.state.sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/ui/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (the sign-in page's), read without python-multipart."""
    from urllib.parse import parse_qs

    body = (await request.body()).decode("utf-8", errors="replace")
    return {name: values[0] for name, values in parse_qs(body, max_num_fields=10).items()}


def _local(target: str) -> str:
    """Where to go after signing in: a page of this UI only (never another site)."""
    return target if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target else "/ui/"


def _run_view(root: RunsRoot, reader: PredictionReader, run_id: str, order: str, query: str, wrong: bool,
              number: int, part: str = "") -> dict[str, Any]:  # fmt: skip
    path = root.resolve(run_id)
    summary = root.summary(path)
    if summary is None:
        raise RunPathError(f"{run_id!r} is not a run directory (no run.json, search.json or training checkpoints)")
    metrics = summary.metrics or _read_metrics_file(path)
    examples, pages, total = [], 1, 0
    parts = root.prediction_parts(path)
    predictions = choose_part(parts, part)
    if predictions is not None:
        every = reader.examples(predictions, root.input_fields(path))
        total = len(every)
        examples, pages = page(every, order=order, number=number, query=query, wrong_only=wrong)
    report = next((path / n for n in ("report.md", "search.md") if own_file(path / n)), None)
    link = f"/ui/file?run={quote(run_id)}&name="
    return {
        "run": summary, "metrics": metrics, "plots": root.plots(path), "file_link": link,
        "report": render_markdown(report.read_text(encoding="utf-8", errors="replace"), link) if report else "",
        "search": _read_search(path), "progress": summary.progress, "examples": examples, "pages": pages,
        "page": min(number, pages), "total": total, "order": order, "q": query, "wrong": wrong,
        "parts": list(parts) if len(parts) > 1 else [], "part": part or next(iter(parts), ""),
        "query_link": f"/ui/run?id={quote(run_id)}&part={quote(part)}",
    }  # fmt: skip


def _read_metrics_file(path: Path) -> dict[str, Any]:
    """The scalar metrics of a run without run.json's (its metrics.json)."""
    file = path / "metrics.json"
    try:
        data = json.loads(file.read_text(encoding="utf-8")) if own_file(file) else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, int | float | str) and not isinstance(v, bool)}


def _read_search(path: Path) -> dict[str, Any] | None:
    if not own_file(path / SEARCH_FILE):
        return None
    try:
        data = json.loads((path / SEARCH_FILE).read_text(encoding="utf-8"))
    except ValueError:
        return None
    candidates = sorted(data.get("candidates") or [], key=lambda c: -(c.get("dev_score") or 0))
    return {"data": data, "candidates": candidates[:200], "adoption": data.get("adoption"),
            "finalists": data.get("finalists") or []}  # fmt: skip


def _compare_view(root: RunsRoot, reader: PredictionReader, run_ids: list[str], disagree: bool,
                  number: int) -> dict[str, Any]:  # fmt: skip
    run_ids = list(dict.fromkeys(run_ids))  # each run once, in the order given
    check_run_count(len(run_ids))  # before any file is read
    summaries, examples = [], []
    for run_id in run_ids:
        path = root.resolve(run_id)
        predictions = root.predictions_file(path)
        summary = root.summary(path)
        if predictions is None or summary is None:
            raise RunPathError(f"{run_id!r} has no per-example predictions to compare")
        summaries.append(summary)
        examples.append(reader.examples(predictions, root.input_fields(path)))
    comparison = compare_examples([s.id for s in summaries], examples)
    disagreeing = comparison.disagreements()
    rows = disagreeing if disagree else comparison.rows
    shown, pages, number = paged(rows, number)
    link = "/ui/compare?" + "&".join(f"run={quote(s.id)}" for s in summaries)
    return {
        "runs": summaries, "differences": comparison.differences, "rows": shown,
        "shown": len(rows), "total": len(comparison.rows), "disagreeing": len(disagreeing),
        "disagree": disagree, "page": number, "pages": pages, "query_link": link,
    }  # fmt: skip


def _progress(root: RunsRoot, run_id: str) -> dict[str, Any]:
    path = root.resolve(run_id)
    progress = root.progress(path)
    if progress is None:
        return {"status": "finished" if own_file(path / "run.json") else "unknown"}
    return {"status": progress.state, **asdict(progress)}
