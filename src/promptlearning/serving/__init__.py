"""Serving: an OpenAI-compatible HTTP server for models and saved prompt programs.

``promptlearning serve`` runs :func:`create_app` under uvicorn. Requests reach the model through one
batcher thread (:mod:`~promptlearning.serving.batching`) that gathers concurrent requests into
batched ``loglikelihood`` / ``generate`` calls. The package uses only ``models``, ``methods`` and
saved programs.
"""

from promptlearning.serving.app import create_app
from promptlearning.serving.served import ServedModels
from promptlearning.serving.server import RunningServer, serve, start_server
from promptlearning.serving.settings import ServerSettings, load_settings

__all__ = ["RunningServer", "ServedModels", "ServerSettings", "create_app", "load_settings", "serve", "start_server"]
