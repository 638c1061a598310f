"""``promptlearning search`` as a task-level job: search a classification task's prompt on dev,
write ``<output_dir>/<task>-search/``, then run the winner and the task's own prompt on the task's
eval split as ordinary runs. The search itself (:mod:`promptlearning.search`) knows no task files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from promptlearning.io import write_atomically
from promptlearning.models import check_text_model, load_model
from promptlearning.models.interface import LanguageModel
from promptlearning.search.run import SearchResult, SearchSettings, check_search, search, search_report, write_search
from promptlearning.tasks.registry import load_task, run_task


def run_search(
    config: Any,
    settings: SearchSettings,
    *,
    output_dir: str | Path | None = None,
    model: LanguageModel | None = None,
    test: bool = True,
    progress: bool | None = None,
) -> SearchResult:
    """Search on dev, write ``<output_dir>/<task>-search/``, then (``test``) run the winner and the
    task's own prompt once on the task's eval split, each into an ordinary run directory there."""
    check_search(config, settings)
    directory = Path(output_dir or config.output_dir) / f"{config.name}-search"
    if model is None:
        check_text_model(config.model)
        model = load_model(config.model, pull=True, batch_size=config.batch_size, **config.model_options())
    if settings.cache is None:
        settings.cache = directory / "scores.jsonl"
        directory.mkdir(parents=True, exist_ok=True)
    result = search(config, model, settings, progress=progress)
    task_file = write_search(directory, config, result)
    if test:
        result.seed_test = run_task(config, model=model, output_dir=directory / "runs", progress=progress)
        result.test = result.seed_test  # the task's own prompt kept: the same run
        if result.output != "own":
            result.test = run_task(load_task(task_file), model=model, output_dir=directory / "runs", progress=progress)
    write_atomically(directory / "search.md", search_report(config, result))
    return result
