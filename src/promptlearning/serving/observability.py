"""Prometheus metrics (named like vLLM's, under ``promptlearning:``) and JSON access logs."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """The server's metrics, in a registry of its own (several servers can live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "promptlearning:http_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "promptlearning:e2e_request_latency_seconds",
            "request latency, end to end",
            ["endpoint", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.running = Gauge("promptlearning:num_requests_running", "requests in the model call being run", registry=r)
        self.waiting = Gauge("promptlearning:num_requests_waiting", "requests waiting for the model", registry=r)
        self.queue_capacity = Gauge(
            "promptlearning:queue_capacity", "requests that may wait before new ones get 429 (max_queue)", registry=r
        )
        self.joined = Gauge("promptlearning:joined_requests", "generation requests that joined a running "
                            "decoding call (continuous batching)", registry=r)  # fmt: skip
        self.worker_up = Gauge("promptlearning:model_worker_up", "1 while the model worker runs, 0 once it stopped",
                               registry=r)  # fmt: skip
        self.batch_size = Histogram(
            "promptlearning:batch_size", "items per batched model call", buckets=BATCH_BUCKETS, registry=r
        )
        self.prompt_tokens = Counter("promptlearning:prompt_tokens", "prompt tokens processed", registry=r)
        self.generation_tokens = Counter("promptlearning:generation_tokens", "tokens generated", registry=r)
        self.time_to_first_token = Histogram(
            "promptlearning:time_to_first_token_seconds",
            "time to the first generated token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )


# Masks for logged content: e-mail addresses, phone numbers, API keys and bearer tokens.
_MASKS = [
    (re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+"), "[email]"),
    (re.compile(r"(?i)\bbearer\s+[\w.~+/=-]+"), "Bearer [key]"),
    (re.compile(r"\b(sk|pl|hf|api|key)[-_][\w-]{12,}\b"), "[key]"),
    (re.compile(r"\b[A-Fa-f0-9]{32,}\b|\b[A-Za-z0-9_-]{40,}\b"), "[key]"),
    (re.compile(r"(?<![\w])\+?\d[\d ().-]{7,}\d(?![\w])"), "[phone]"),
]


def mask_sensitive(text: str) -> str:
    """``text`` with e-mail addresses, phone numbers and API keys replaced by placeholders."""
    for pattern, replacement in _MASKS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, message and the record's ``extra`` fields."""

    FIELDS = ("request_id", "method", "path", "status", "duration_ms", "key", "client", "kind", "content")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in self.FIELDS if hasattr(record, k)})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def server_logger(name: str = "promptlearning.serving") -> logging.Logger:
    logger = logging.getLogger(name)
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger
