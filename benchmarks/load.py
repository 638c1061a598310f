"""Servers in their own processes and a bounded asynchronous load generator, for the serving
benchmarks.

The server under test runs as a subprocess (as it would be deployed), so that the clients of the
benchmark do not share its interpreter lock; the clients are coroutines on one event loop, which
costs far less CPU than a thread per client on a two-core machine.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """A server started as a subprocess; a context manager that terminates it."""

    url: str
    process: subprocess.Popen
    log: Path

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def spawn(command: list[str], port: int, ready_path: str, log: Path, timeout: float = 300.0) -> ServerProcess:
    """Start ``command`` (listening on ``port``) and wait until ``ready_path`` answers 200."""
    out = log.open("w")
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                return ServerProcess(url, process, log)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"{command[:4]} was not ready within {timeout:.0f} s")
        time.sleep(0.5)


def promptlearning_server(log: Path, *flags: str) -> ServerProcess:
    """``promptlearning serve --no-auth`` on a free loopback port, with ``flags``."""
    port = free_port()
    command = [sys.executable, "-m", "promptlearning.cli", "serve", "--no-auth", "--host", "127.0.0.1",
               "--port", str(port), *flags]  # fmt: skip
    return spawn(command, port, "/ready", log)


def llamacpp_server(log: Path, gguf: Path, alias: str, *flags: str) -> ServerProcess:
    """llama-cpp-python's OpenAI-compatible server on a free loopback port."""
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--model_alias", alias, *flags]  # fmt: skip
    return spawn(command, port, "/v1/models", log)


@dataclass
class LoadResult:
    """What a load run saw: wall time, the latency of every answered request and status counts."""

    seconds: float
    latencies: list[float] = field(default_factory=list)  # of 200 answers
    sent_at: list[float] = field(default_factory=list)  # when each of them was sent (s from the start)
    refused: list[float] = field(default_factory=list)  # latencies of 429 answers
    statuses: dict[int | str, int] = field(default_factory=dict)  # status code, or the error's class name
    bodies: list[dict] = field(default_factory=list)  # JSON of 200 answers (when kept)

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    async def post(self, http: httpx.AsyncClient, path: str, body: dict, start: float) -> httpx.Response | None:
        """POST one request and record its answer (``start``: the run's ``time.monotonic()``); the
        response when it is a 200."""
        sent = time.monotonic()
        try:
            response = await http.post(path, json=body)
            status: int | str = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, type(exc).__name__
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            self.latencies.append(time.monotonic() - sent)
            self.sent_at.append(sent - start)
            return response
        if status == 429:
            self.refused.append(time.monotonic() - sent)
        return None


async def _drive(url: str, requests: list[tuple[str, dict]], clients: int, keep: bool, timeout: float) -> LoadResult:
    result = LoadResult(0.0)
    queue: asyncio.Queue[tuple[int, tuple[str, dict]]] = asyncio.Queue()
    for item in enumerate(requests):
        queue.put_nowait(item)
    kept: dict[int, dict] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:

        async def client() -> None:
            while not queue.empty():
                index, (path, body) = queue.get_nowait()
                response = await result.post(http, path, body, start)
                if response is not None and keep:
                    kept[index] = response.json()

        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        result.seconds = time.monotonic() - start
    result.bodies = [kept[i] for i in sorted(kept)]
    return result


def drive(
    url: str,
    requests: list[tuple[str, dict]],
    clients: int,
    *,
    keep: bool = False,
    timeout: float = 600.0,
) -> LoadResult:
    """POST every (path, JSON body) with ``clients`` requests in flight; ``keep`` keeps the answers'
    JSON in request order."""
    return asyncio.run(_drive(url, requests, clients, keep, timeout))


async def _open_loop(
    url: str, requests: list[tuple[str, dict]], rate: float, duration: float, timeout: float
) -> LoadResult:
    result = LoadResult(0.0)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=256)
    async with httpx.AsyncClient(base_url=url, timeout=timeout, limits=limits) as http:
        tasks = []
        start = time.monotonic()
        while (now := time.monotonic() - start) < duration:
            due = len(tasks) / rate
            if due > now:
                await asyncio.sleep(due - now)
            path, body = requests[len(tasks) % len(requests)]
            tasks.append(asyncio.create_task(result.post(http, path, body, start)))
        await asyncio.gather(*tasks)
        result.seconds = time.monotonic() - start
    return result


def open_loop(
    url: str, requests: list[tuple[str, dict]], rate: float, duration: float, *, timeout: float = 300.0
) -> LoadResult:
    """Send ``rate`` requests per second for ``duration`` seconds whatever the answers (cycling
    through ``requests``), then wait for every answer: arrivals do not slow down when the server
    does, as with real users."""
    return asyncio.run(_open_loop(url, requests, rate, duration, timeout))


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]
