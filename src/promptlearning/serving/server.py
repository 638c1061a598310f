"""Running the application under uvicorn: in the foreground (``promptlearning serve``) or in a
background thread on a free loopback port (tests, benchmarks, notebooks)."""

from __future__ import annotations

import os
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
    """uvicorn, but the first Ctrl-C / SIGTERM first refuses new requests (503, the listener stays
    open) and lets the in-flight ones finish, then stops; whatever is stuck, the process exits
    within ``grace`` seconds of the signal. A second signal stops at once. If the model worker
    stops, the server stops too and :attr:`exit_code` is 1 (a supervisor restarts it)."""

    def __init__(self, config: uvicorn.Config, app: Any, grace: float) -> None:
        super().__init__(config)
        self.application = app
        self.grace = grace
        self.exit_code = 0
        app.state.on_worker_failure = self._worker_failed

    def handle_exit(self, sig: int, frame: Any) -> None:
        state = self.application.state
        if state.draining:  # a second signal: no more waiting
            super().handle_exit(sig, frame)
            self.force_exit = True
            return
        state.draining = True
        signalled = time.monotonic()
        threading.Thread(target=self._drain, args=(sig, signalled), daemon=True, name="promptlearning-drain").start()
        threading.Thread(target=self._deadline, daemon=True, name="promptlearning-deadline").start()

    def _drain(self, sig: int, signalled: float) -> None:
        """Wait for the admitted requests and the model's queue to empty (most of the grace period),
        then let uvicorn close the listener and the connections."""
        state = self.application.state
        deadline = signalled + max(0.0, self.grace - 1.0)
        while time.monotonic() < deadline and (state.admitted or not state.batcher.idle()):
            time.sleep(0.05)
        self.config.timeout_graceful_shutdown = max(1, int(deadline + 1.0 - time.monotonic()))
        super().handle_exit(sig, None)

    def _deadline(self) -> None:
        time.sleep(self.grace)
        self.application.state.logger.error(
            "requests still running after the shutdown grace period: exiting", extra={"kind": "shutdown"}
        )
        os._exit(1)  # threads stuck in a model call cannot be interrupted otherwise

    def _worker_failed(self) -> None:
        self.exit_code = 1
        self.should_exit = True


def _config(app: Any, settings: ServerSettings, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,  # the app writes its own JSON access log
        timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_seconds)),
        **options,
    )


def serve(settings: ServerSettings) -> int:
    """Run the server until interrupted; the exit code (1 if the model worker stopped)."""
    app = create_app(settings)
    server = _DrainingServer(_config(app, settings, host=settings.host, port=settings.port), app,
                             settings.shutdown_grace_seconds)  # fmt: skip
    server.run()
    return server.exit_code


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
    app.state.on_worker_failure = lambda: setattr(server, "should_exit", True)
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
