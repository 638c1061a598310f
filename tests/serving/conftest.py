"""A real server (uvicorn on a free loopback port) over the tiny models, shared by the serving tests."""

from __future__ import annotations

from pathlib import Path

import pytest

API_KEY = "test-key-0123"


@pytest.fixture(scope="session")
def tiny_program_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> Path:
    """A saved PET program (LoRA on the tiny llama; untrained weights are still real weights)."""
    from promptlearning.training import ProgramSpec, build_program

    spec = ProgramSpec(objective="pet", model=str(tiny_llama_dir), labels=["negative", "positive"],
                       template={"input": "review : {{ text }}\nsentiment :"},
                       verbalizer={"label_words": {"negative": " negative", "positive": " positive"}},
                       peft="lora", peft_options={"r": 2})  # fmt: skip
    directory = tmp_path_factory.mktemp("program") / "program"
    build_program(spec).save(directory)
    return directory


@pytest.fixture(scope="session")
def served(tiny_lm, tiny_encoder_dir: Path, tiny_program_dir: Path):
    from promptlearning.models import load_model
    from promptlearning.serving import ServedModels
    from promptlearning.training.program import load_program

    models = ServedModels(
        text={"tiny": tiny_lm},
        embedders={"tiny-encoder": load_model(tiny_encoder_dir)},
        programs={"sentiment": load_program(tiny_program_dir, device="cpu")},
    )
    models.loaded.set()
    return models


def settings(**overrides):
    from promptlearning.serving import ServerSettings

    options = {"api_key": [API_KEY], "port": 0, "model": "tiny", "embedding_model": None, "batch_wait_ms": 20.0}
    return ServerSettings(**{**options, **overrides})


@pytest.fixture(scope="session")
def server(served):
    from promptlearning.serving import start_server

    running = start_server(settings(), served)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def client(server):
    import openai

    return openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)


@pytest.fixture
def start(served):
    """``start(**settings)``: a server of its own for a test (stopped at the end)."""
    from promptlearning.serving import start_server

    running = []

    def make(models=None, **overrides):
        server = start_server(settings(**overrides), models or served)
        running.append(server)
        return server

    yield make
    for server in running:
        server.stop(timeout=5)
