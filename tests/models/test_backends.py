"""Backends are registered, not named in ``load_model``: a new one is one function and one registration."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlearning.models import load_model, register_backend
from promptlearning.models.interface import _BACKENDS, _RESOLVES_NAMES


@pytest.fixture
def registered():
    names = []

    def register(name: str, **options):
        names.append(name)
        return register_backend(name, **options)

    yield register
    for name in names:
        _BACKENDS.pop(name, None)
        _RESOLVES_NAMES.discard(name)


def test_a_backend_that_resolves_names_gets_them_as_written(registered, tiny_lm) -> None:
    seen = {}

    @registered("on-a-server", resolves_names=True)
    def factory(name, *, pull=False, **options):
        seen.update(name=name, pull=pull, options=options)
        return tiny_lm

    assert load_model("somebody/remote-model", backend="on-a-server", pull=True) is tiny_lm
    assert seen["name"] == "somebody/remote-model" and seen["pull"] is True
    assert seen["options"] == {"device": "auto", "dtype": "auto"}


def test_a_backend_of_local_files_gets_the_resolved_directory(registered, tiny_llama_dir: Path, tiny_lm) -> None:
    seen = {}

    @registered("my-files")
    def factory(path, **options):
        seen.update(path=path, name=options.get("name"))
        return tiny_lm

    load_model(str(tiny_llama_dir), backend="my-files")
    assert seen["path"] == tiny_llama_dir and seen["name"] == tiny_llama_dir.name


def test_load_model_names_no_backend() -> None:
    import inspect

    from promptlearning.models import load_model as function

    source = inspect.getsource(function)
    for name in ("openai", "llamacpp"):
        assert f'"{name}"' not in source.split('"""')[-1], f"load_model special-cases the {name} backend"
