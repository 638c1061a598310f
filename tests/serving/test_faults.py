"""Fault injection on a real server (uvicorn on loopback, the official ``openai`` client, httpx):
clients that disconnect mid-response or while queued, overload on a streamed request, an exception
inside the model thread, SIGTERM under load. Each test ends by checking that a normal request is
still answered correctly within seconds.

The "endless" model is a tiny random llama whose EOS logit is 0 while the others are spread
around it, so greedy decoding never ends before ``max_tokens``: a request for 3,000 tokens keeps the
model busy for seconds, long enough to walk away from.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

API_KEY = "test-key-0123"  # the key conftest.py's servers accept
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
LONG = 3000  # tokens: seconds of work on the endless model


@pytest.fixture(scope="module")
def endless_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_builder) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    directory = tiny_llama_builder(tmp_path_factory.mktemp("endless") / "model", max_positions=4096)
    model = AutoModelForCausalLM.from_pretrained(directory)
    with torch.no_grad():
        model.lm_head.weight[model.config.eos_token_id] = 0  # never the argmax: generation runs to max_tokens
    model.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def endless(endless_dir: Path):
    from promptlearning.models import load_model
    from promptlearning.serving import ServedModels

    models = ServedModels(text={"endless": load_model(str(endless_dir))})
    models.loaded.set()
    return models


@pytest.fixture
def endless_server(endless, start):
    return start(endless, model="endless", max_tokens_limit=4096, batch_wait_ms=5.0)


def _until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _answers_normally(server, seconds: float = 5.0) -> None:
    """A normal request gets its full, correct answer within ``seconds``."""
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=seconds)
    start = time.perf_counter()
    out = client.completions.create(model="endless", prompt="hello there", max_tokens=5, temperature=0)
    assert time.perf_counter() - start < seconds
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 5
    assert server.app.state.batcher.alive
    assert httpx.get(server.url + "/ready").status_code == 200


def _stream(server, max_tokens: int = LONG, **options):
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, timeout=60)
    return client.completions.create(
        model="endless", prompt="hello there", max_tokens=max_tokens, temperature=0, stream=True, **options
    )


def test_streamed_client_closing_mid_response_drops_its_work(endless_server):
    stream = _stream(endless_server)
    chunks = iter(stream)
    next(chunks), next(chunks)
    stream.close()
    batcher = endless_server.app.state.batcher
    assert _until(batcher.idle, 2.0), "the abandoned generation kept the model busy"
    _answers_normally(endless_server)


def test_a_streamed_request_is_admitted_in_flight_and_timed_until_its_last_byte(endless_server):
    import logging

    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append
    logger = logging.getLogger("promptlearning.serving")
    logger.addHandler(handler)
    state = endless_server.app.state
    try:
        stream = _stream(endless_server, max_tokens=200)
        chunks = iter(stream)
        next(chunks)
        assert (state.in_flight, state.admitted) == (1, 1)  # answering: its headers went long ago
        start = time.perf_counter()
        assert sum(1 for _ in chunks) > 0
        streaming = time.perf_counter() - start
        assert _until(lambda: state.in_flight == 0 and state.admitted == 0, 2.0)
    finally:
        logger.removeHandler(handler)
    (line,) = [r for r in lines if getattr(r, "path", None) == "/v1/completions"]
    assert line.status == 200 and line.duration_ms >= 900 * streaming  # the access log times the whole stream
    assert stream.response.headers["x-request-id"] == line.request_id
    _answers_normally(endless_server)


def test_streamed_request_abandoned_while_queued_is_dropped(endless_server):
    running = _stream(endless_server)
    next(iter(running))  # the model is busy with it
    queued = _stream(endless_server, seed=1)  # another key: waits for the running call
    batcher = endless_server.app.state.batcher
    assert _until(lambda: batcher.waiting == 1, 2.0)
    queued.close()
    assert _until(lambda: batcher.waiting == 0, 2.0), "the abandoned queued request was not dropped"
    running.close()
    assert _until(batcher.idle, 2.0)
    _answers_normally(endless_server)


SOLVE = ("/v1/solve", {"model": "endless", "questions": ["hello there"], "mode": "direct", "max_tokens": LONG})
COMPLETION = ("/v1/completions", {"model": "endless", "prompt": "hello there", "max_tokens": LONG, "temperature": 0})


@pytest.mark.parametrize(("stage", "request_"), [("running", COMPLETION), ("queued", COMPLETION), ("running", SOLVE)])
def test_non_streamed_client_that_gives_up_leaves_no_work_behind(endless_server, stage, request_):
    batcher = endless_server.app.state.batcher
    path, body = request_
    blocker = None
    if stage == "queued":
        blocker = _stream(endless_server, seed=2)
        next(iter(blocker))
    with pytest.raises(httpx.TimeoutException):
        httpx.post(endless_server.url + path, json=body, headers=HEADERS, timeout=1.0)
    if blocker is not None:
        assert _until(lambda: batcher.waiting == 0, 2.0), "the abandoned queued request was not dropped"
        blocker.close()
    assert _until(batcher.idle, 2.0), "a client that gave up left its work behind"
    _answers_normally(endless_server)


def test_overload_on_a_streamed_request_is_429_before_the_stream(endless, start):
    server = start(endless, model="endless", max_tokens_limit=4096, max_queue=1, max_batch_size=1)
    running = _stream(server)
    next(iter(running))
    queued = _stream(server, seed=3)
    assert _until(lambda: server.app.state.batcher.waiting == 1, 2.0)
    body = {"model": "endless", "prompt": "x", "max_tokens": 5, "stream": True, "seed": 4}
    response = httpx.post(server.url + "/v1/completions", json=body, headers=HEADERS, timeout=10)
    assert response.status_code == 429, response.text
    assert response.headers["retry-after"] == "1"
    queued.close()
    running.close()
    assert _until(server.app.state.batcher.idle, 2.0)
    _answers_normally(server)


def test_an_exception_in_a_model_call_fails_that_request_alone(endless_server):
    batcher = endless_server.app.state.batcher

    def broken(items):
        raise RuntimeError("planted fault")

    with pytest.raises(RuntimeError, match="planted"):
        batcher.call("broken", [1, 2], broken)
    assert batcher.alive
    _answers_normally(endless_server)


def test_a_stopped_model_worker_is_not_ready_and_stops_the_server(endless, start):
    server = start(endless, model="endless", max_tokens_limit=4096)
    stream = _stream(server)
    next(iter(stream))  # the model is busy: what follows waits in the queue

    def end_the_worker(items):
        raise SystemExit("planted: the worker thread ends")

    server.app.state.batcher.submit("fatal", [1], end_the_worker)
    answers: list[httpx.Response] = []
    body = {"model": "endless", "prompt": "hello", "max_tokens": 5}
    waiting = threading.Thread(target=lambda: answers.append(
        httpx.post(server.url + "/v1/completions", json=body, headers=HEADERS, timeout=30)))  # fmt: skip
    waiting.start()
    assert _until(lambda: server.app.state.batcher.waiting == 2, 5.0)
    stream.close()  # the worker takes the fatal job next
    waiting.join(10)
    assert answers and answers[0].status_code == 503, "a request queued when the worker died must not hang"
    assert "model worker has stopped" in answers[0].json()["error"]["message"]
    assert not server.app.state.batcher.alive
    assert _until(lambda: not server.thread.is_alive(), 10.0), "the server kept running without its model worker"
    assert server.app.state.worker_failed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(model_dir: Path, port: int, *extra: str, prelude: str = "") -> subprocess.Popen:
    code = f"import sys\n{prelude}\nfrom promptlearning.cli import main\nsys.exit(main(sys.argv[1:]))"
    argv = ["serve", "--model", str(model_dir), "--no-auth", "--port", str(port), "--embedding-model", "none",
            "--max-tokens-limit", "4096", *extra]  # fmt: skip
    return subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PROMPTLEARNING_LOG_LEVEL": "warning"})  # fmt: skip


def _wait_ready(url: str, process: subprocess.Popen, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-3000:]
        try:
            if httpx.get(url + "/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the server did not become ready")


@contextlib.contextmanager
def _serving(model_dir: Path, *flags: str, prelude: str = ""):
    """``promptlearning serve`` of ``model_dir`` in a process of its own: (url, process), killed at the end."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    process = _serve(model_dir, port, *flags, prelude=prelude)
    try:
        _wait_ready(url, process)
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()


def test_sigterm_drains_then_exits_within_the_grace_period(endless_dir: Path):
    grace = 20.0  # the in-flight request needs about a second alone: room for a loaded machine
    with _serving(endless_dir, "--shutdown-grace-seconds", str(grace)) as (url, process):
        body = {"model": str(endless_dir), "prompt": "hello there", "max_tokens": 1500, "temperature": 0}
        finished: list[httpx.Response] = []
        in_flight = threading.Thread(target=lambda: finished.append(httpx.post(url + "/v1/completions", json=body,
                                                                              timeout=30)))  # fmt: skip
        in_flight.start()
        time.sleep(0.3)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.1)
        refused = httpx.post(url + "/v1/completions", json={**body, "max_tokens": 4000}, timeout=5)
        assert refused.status_code == 503, refused.text
        assert httpx.get(url + "/ready", timeout=5).status_code == 503
        in_flight.join(30)
        assert finished and finished[0].status_code == 200, "the in-flight request was not finished"
        assert finished[0].json()["usage"]["completion_tokens"] == 1500
        process.wait(timeout=grace + 5)
        assert time.monotonic() - signalled <= grace + 1.0


def test_sigterm_with_stuck_work_still_exits_within_the_grace_period(endless_dir: Path):
    grace = 3.0
    with _serving(endless_dir, "--shutdown-grace-seconds", str(grace)) as (url, process):
        body = {"model": str(endless_dir), "prompt": "hello", "max_tokens": 4000, "temperature": 0, "n": 8}
        outcome: list[object] = []

        def stuck_client() -> None:
            try:
                outcome.append(httpx.post(url + "/v1/completions", json=body, timeout=60))
            except httpx.HTTPError as exc:  # the server exits under it: the connection is closed
                outcome.append(exc)

        client = threading.Thread(target=stuck_client, daemon=True)
        client.start()
        time.sleep(0.5)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=grace + 5)
        assert time.monotonic() - signalled <= grace + 1.0
        client.join(5)
        assert outcome and isinstance(outcome[0], httpx.HTTPError), "the stuck request cannot have been answered"


def test_serve_exits_non_zero_when_its_model_worker_stops(endless_dir: Path):
    planted = (
        "import promptlearning.serving.batching as batching\n"
        "def _run(self, batch):\n"
        "    raise SystemExit('planted: the model worker ends')\n"
        "batching.Batcher._run = _run\n"
    )
    with _serving(endless_dir, prelude=planted) as (url, process):
        body = {"model": str(endless_dir), "prompt": "hello", "max_tokens": 5}
        response = httpx.post(url + "/v1/completions", json=body, timeout=10)
        assert response.status_code == 503, response.text
        assert process.wait(timeout=10) == 1
