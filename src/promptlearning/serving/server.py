"""Running the application under uvicorn: in the foreground (``promptlearning serve``) or in a
background thread on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn

from promptlearning.serving.app import create_app
from promptlearning.serving.served import ServedModels
from promptlearning.serving.settings import ServerSettings


class _DrainingServer(uvicorn.Server):
    """uvicorn, but the first Ctrl-C / SIGTERM first refuses new requests (503) and lets the
    in-flight ones finish (up to ``shutdown_grace_seconds``) before the server stops."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.application = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.application.state.draining = True
        super().handle_exit(sig, frame)


def _config(app: Any, settings: ServerSettings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # the app writes its own JSON access log
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        **options,
    )


def serve(settings: ServerSettings) -> None:
    """Run the server until interrupted."""
    app = create_app(settings)
    _DrainingServer(_config(app, settings, host=settings.host, port=settings.port), app).run()


@dataclass
class RunningServer:
    """A server running in a background thread; :meth:`stop` drains and ends it."""

    url: str
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (``…/v1``)."""
        return self.url + "/v1"

    def stop(self, timeout: float = 30.0) -> None:
        """Refuse new requests, let in-flight ones finish, then stop."""
        self.app.state.draining = True
        deadline = time.monotonic() + timeout
        while self.app.state.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)
        self.server.should_exit = True
        self.thread.join(timeout)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    settings: ServerSettings, served: ServedModels | None = None, *, ready_timeout: float = 600.0
) -> RunningServer:
    """Start a server on ``settings.host`` and a free port (unless ``settings.port`` names one) in a
    thread; return once it answers ``/ready`` (or, if it loads in the background, ``/health``)."""
    app = create_app(settings, served)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(_config(app, settings))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not the main thread
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="promptlearning-http")
    thread.start()
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    running = RunningServer(f"http://{host}:{port}", app, server, thread)
    deadline = time.monotonic() + ready_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    if served is None:
        while not app.state.served.loaded.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
    return running
