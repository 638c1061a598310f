"""The web UI in a real browser: headless Chromium (the system's, `make test` installs it) driven by
Playwright against the real server on a loopback port, over runs the tiny model wrote. Screenshots
go to ``test-artifacts/ui/`` (or ``$PROMPTLEARNING_TEST_ARTIFACTS/ui``)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

API_KEY = "test-key-0123"
REPOSITORY = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("PROMPTLEARNING_TEST_ARTIFACTS", REPOSITORY / "test-artifacts"))


def chromium_path() -> str | None:
    for name in (os.environ.get("PROMPTLEARNING_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the [dev] extra")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no Chromium on this machine: `make test` installs it (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def signed_in(browser, ui_server):
    """A page of a browser session that signed in once with the key."""
    context = browser.new_context(viewport={"width": 1366, "height": 860}, base_url=ui_server.url)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("dialog", lambda dialog: (page.errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.goto("/ui/")
    assert "/ui/login" in page.url
    page.fill("#key", API_KEY)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
    yield page
    context.close()


def shoot(page, name: str) -> None:
    folder = ARTIFACTS / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_the_runs_list_shows_every_run_and_filters(signed_in, ui_runs: Path) -> None:
    from playwright.sync_api import expect

    page = signed_in
    page.goto("/ui/")
    page.keyboard.press("Tab")  # the first stop is the skip link
    expect(page.locator("a.skip")).to_be_focused()
    rows = page.locator("#runs-table tbody tr")
    # the two classification runs, the live training run, the search and its two eval runs (not the linked ones)
    expect(rows).to_have_count(6)
    expect(page.locator("text=running")).to_be_visible()
    shoot(page, "runs")
    page.fill("#filter", "reviews-calibrated")
    expect(page.locator("#runs-table tbody tr:visible")).to_have_count(1)
    page.fill("#filter", "")
    page.locator("th button:has-text('Result')").focus()  # headers sort from the keyboard too
    page.keyboard.press("Enter")
    expect(page.locator("th[aria-sort]")).to_have_count(1)
    values = [float(v) for v in page.locator("#runs-table tbody td[data-value]:nth-child(6)").evaluate_all(
        "cells => cells.map(c => c.dataset.value).filter(v => v !== '')")]  # fmt: skip
    assert values == sorted(values)
    assert page.errors == []


def test_a_run_page_shows_predictions_worst_first_as_text(signed_in, ui_runs: Path) -> None:
    from playwright.sync_api import expect

    page = signed_in
    page.goto("/ui/")
    page.locator("#runs-table a", has_text="reviews-zero-shot").click()
    expect(page.locator("h1")).to_contain_text("reviews-zero-shot")
    expect(page.locator("table.examples tbody tr")).to_have_count(12)
    expect(page.locator(".plots img").first).to_be_visible()
    first = page.locator("table.examples tbody tr").first
    predictions = [json.loads(line) for line in next((ui_runs / "demo").glob("reviews-zero-shot*/predictions.jsonl"))
                   .read_text().splitlines()]  # fmt: skip
    if any(not p["correct"] for p in predictions):
        expect(first).to_have_class("wrong")
    # markup in an input is shown as text and never runs
    page.fill("#q", "script")
    page.click("form.toolbar button[type=submit]")
    expect(page.locator("table.examples td.text")).to_have_text(["<script>window.__xss = 1</script> fine"])
    assert page.evaluate("() => window.__xss") is None
    shoot(page, "run")
    assert page.errors == []


def test_compare_two_runs_and_keep_the_disagreements(signed_in, ui_runs: Path) -> None:
    from playwright.sync_api import expect

    page = signed_in
    page.goto("/ui/")
    for box in page.locator("input[name=run][value^='demo/']").all():
        box.check()
    page.click("#compare-button")
    expect(page.locator("h1")).to_have_text("Compare 2 runs")
    expect(page.locator("#differences tbody tr")).to_have_count(2)
    expect(page.locator("#matrix tbody tr")).to_have_count(12)
    runs = [[json.loads(line) for line in (ui_runs / run_id / "predictions.jsonl").read_text().splitlines()]
            for run_id in page.locator("input[name=run]").evaluate_all("boxes => boxes.map(b => b.value)")]  # fmt: skip
    pairs = zip(*runs, strict=True)
    disagreeing = sum((a["predicted"], a["correct"]) != (b["predicted"], b["correct"]) for a, b in pairs)
    page.check("#disagree")
    page.click("form.toolbar button[type=submit]")
    expect(page.locator("#matrix tbody tr")).to_have_count(disagreeing)
    shoot(page, "compare")
    assert page.errors == []


def test_the_playground_scores_a_template_and_shows_token_logprobs(signed_in) -> None:
    from playwright.sync_api import expect

    page = signed_in
    page.goto("/ui/playground")
    expect(page.locator("#target option[value='model:tiny']")).to_have_count(1)
    page.select_option("#target", "model:tiny")
    page.fill("#template", "review : {{ text }}\nsentiment :")
    page.fill("#input", "a joy to watch")
    page.click("#score")
    expect(page.locator("#probabilities tbody tr")).to_have_count(2)
    expect(page.locator("#prompt")).to_have_text("review : a joy to watch\nsentiment :")
    expect(page.locator("#heatmap span").first).to_be_visible()
    raw = [float(t.split()[-1]) for t in page.locator("#probabilities tbody td:nth-child(2)").all_inner_texts()]
    assert sum(raw) == pytest.approx(1, abs=0.003)
    assert page.locator("#heatmap span[title^='log p']").count() >= 3
    page.click("#generate")
    expect(page.locator("#generation")).not_to_be_empty()
    shoot(page, "playground")
    page.select_option("#target", "program:sentiment")  # a served program: its own template and words
    page.click("#score")
    expect(page.locator("#prompt")).to_have_text("(a saved program renders its own prompt)")
    expect(page.locator("#probabilities tbody tr")).to_have_count(2)
    expect(page.locator("#probabilities tbody tr").first).to_contain_text("negative")
    page.select_option("#target", "model:tiny")
    page.fill("#words", "only: one")
    page.click("#score")
    expect(page.locator("#error")).to_contain_text("at least two labels")
    assert page.errors == []


def test_a_live_run_updates_without_a_reload_and_reloads_when_done(signed_in, ui_runs: Path, live_run_maker) -> None:
    from playwright.sync_api import expect

    live = ui_runs / "training" / "browser-live-run"  # its own: this test finishes it
    live_run_maker(live)
    page = signed_in
    page.goto("/ui/run?id=training/browser-live-run")
    expect(page.locator("#progress-step")).to_have_text("20")
    page.evaluate("() => { window.__same_page = true; }")
    step = live / "seed-13" / "checkpoints" / "step-0000040"
    step.mkdir()
    history = [{"step": 20, "accuracy": 0.5}, {"step": 40, "accuracy": 0.75}]
    (step / "trainer_state.json").write_text(json.dumps({"step": 40, "history": history}))
    expect(page.locator("#progress-step")).to_have_text("40", timeout=15_000)  # no reload: the page asks
    expect(page.locator("#progress-table tbody tr")).to_have_count(2)
    assert page.evaluate("() => window.__same_page") is True  # updated in place, not reloaded
    (live / "run.json").write_text(json.dumps({"kind": "train", "name": "live-task", "setting": "pet", "model": "tiny",
                                               "metric": "accuracy", "value": 0.8, "values": [0.8]}))  # fmt: skip
    expect(page.locator("#headline")).to_have_text("0.8000", timeout=15_000)
    expect(page.locator("#live")).to_have_count(0)
    assert page.errors == []
