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


UI_TEXTS = [
    "i loved this film", "a dull , tedious mess", "great movie !", "awful .", "<script>window.__xss = 1</script> fine",
    "the plot drags", "wonderful acting", "not worth it", "a joy to watch", "boring and long", "<b>bold</b> claims",
    "charming",
]  # fmt: skip


def make_live_run(live: Path) -> None:
    """A training run still going, as the training loop leaves it: config.yaml and a first checkpoint."""
    import json

    (live / "seed-13" / "checkpoints" / "step-0000020").mkdir(parents=True)
    (live / "config.yaml").write_text("type: train\nname: live-task\nmodel: tiny\ntraining: {max_steps: 100}\n")
    state = {"step": 20, "history": [{"step": 20, "accuracy": 0.5}]}
    (live / "seed-13" / "checkpoints" / "step-0000020" / "trainer_state.json").write_text(json.dumps(state))


@pytest.fixture(scope="session")
def live_run_maker():
    """:func:`make_live_run`, for a test that needs a live run of its own."""
    return make_live_run


@pytest.fixture(scope="session")
def ui_runs(tmp_path_factory: pytest.TempPathFactory, tiny_lm) -> Path:
    """A runs root as a user's: two classification runs of the tiny model on the same 12 reviews (one
    holding markup in its inputs), a training run still going, and links that point outside it."""
    import json

    from promptlearning.tasks import run_task, validate_config

    base = tmp_path_factory.mktemp("ui")
    rows = [{"text": t, "label": ("positive", "negative")[i % 2]} for i, t in enumerate(UI_TEXTS)]
    data = base / "reviews.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    root = base / "runs"
    for name, template, calibration in (("zero-shot", "review : {{ text }}\nsentiment :", "none"),
                                        ("calibrated", "{{ text }} . it was", "contextual")):  # fmt: skip
        config = validate_config({
            "name": f"reviews-{name}", "model": "tiny", "data": {"train": str(data), "eval": str(data)},
            "template": {"input": template}, "method": {"calibration": calibration},
            "verbalizer": {"words": {"negative": " negative", "positive": " positive"}},
        })  # fmt: skip
        run_task(config, model=tiny_lm, output_dir=root / "demo", progress=False)
    make_live_run(root / "training" / "live-run")
    _search(root / "searches", tiny_lm)
    secret = base / "outside"
    secret.mkdir()
    (secret / "run.json").write_text('{"kind": "classification", "name": "SECRET", "setting": "", "model": "", '
                                     '"metric": "accuracy", "value": 1.0}')  # fmt: skip
    (secret / "leak.png").write_bytes(b"\x89PNG secret")
    (root / "linked-run").symlink_to(secret, target_is_directory=True)
    (secret / "notes.md").write_text("SECRET REPORT")
    first = sorted((root / "demo").iterdir())[0]
    (first / "linked.png").symlink_to(secret / "leak.png")
    (first / "report.md").unlink()
    (first / "report.md").symlink_to(secret / "notes.md")  # a run's own file that points outside
    (root / "linked-files").mkdir()
    (root / "linked-files" / "run.json").symlink_to(secret / "run.json")
    return root


def _search(output_dir: Path, model) -> None:
    """A real prompt search of the tiny model over the shipped movie reviews: search.json, search.md
    and, under runs/, the eval runs of its output and of the task's own prompt."""
    import promptlearning
    from promptlearning.search.run import SearchSettings
    from promptlearning.tasks import validate_config
    from promptlearning.tasks.search import run_search

    reviews = Path(promptlearning.__file__).parent / "data" / "movie_reviews"
    config = validate_config({
        "name": "movies", "model": "tiny", "template": {"input": "Review: {{ text }}\nSentiment:"},
        "data": {"train": str(reviews / "train.jsonl"), "eval": str(reviews / "test.jsonl"), "eval_limit": 24},
        "verbalizer": {"words": {"negative": " bad", "positive": " good"}},
    })  # fmt: skip
    settings = SearchSettings(dev_size=16, budget=16 * 6, stages=("words", "templates"), ensemble=1, adopt="always")
    run_search(config, settings, output_dir=output_dir, model=model, progress=False)


@pytest.fixture(scope="session")
def ui_server(served, ui_runs: Path):
    """A server whose /ui shows ``ui_runs`` (the same API key as the others)."""
    from promptlearning.serving import start_server

    running = start_server(settings(ui_runs=ui_runs), served)
    yield running
    running.stop()
