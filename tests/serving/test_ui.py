"""The web UI over HTTP: pages behind the keys, read-only and confined to the runs root, content
escaped, bad parameters answered with a clear 4xx (the browser tests are in test_ui_browser.py)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from promptlearning.ui.catalog import RunPathError, RunsRoot
from promptlearning.ui.comparison import compare_examples
from promptlearning.ui.examples import PAGE_SIZE, Example, example_view, page

API_KEY = "test-key-0123"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}


def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(server.url + path, params=params, headers=HEADERS, timeout=30, follow_redirects=False)


def demo_runs(ui_runs: Path) -> list[str]:
    return sorted(p.relative_to(ui_runs).as_posix() for p in (ui_runs / "demo").iterdir())


# ------------------------------------------------------------------ runs root and paths


def test_the_catalogue_finds_every_kind_of_run_and_nothing_through_links(ui_runs: Path) -> None:
    runs = {r.id: r for r in RunsRoot(ui_runs).runs()}
    assert set(demo_runs(ui_runs)) < set(runs)
    assert runs["training/live-run"].status == "running" and runs["training/live-run"].value == 0.5
    assert "linked-run" not in runs and "linked-files" not in runs and all(r.task != "SECRET" for r in runs.values())
    finished = runs[demo_runs(ui_runs)[0]]
    assert finished.kind == "classification" and finished.num_examples == 12 and finished.has_predictions


@pytest.mark.parametrize(
    ("relative", "status"),
    [("../outside", 400), ("/etc", 400), ("demo/../../outside", 400), ("linked-run", 400), ("nope", 404),
     ("demo\\..\\..", 400), ("a\x00b", 400), ("", 400), (".", 400)],
)  # fmt: skip
def test_paths_cannot_leave_the_runs_root(ui_runs: Path, relative: str, status: int) -> None:
    with pytest.raises(RunPathError) as caught:
        RunsRoot(ui_runs).resolve(relative)
    assert caught.value.status == status


def test_a_search_directory_and_a_damaged_run_are_listed(tmp_path: Path) -> None:
    search = tmp_path / "search-1"
    search.mkdir()
    candidate = {"stage": "templates", "template": {"input": "{{ text }} It was"}, "words": {"a": [" x"]},
                 "calibration": "none", "dev_score": 0.75, "demonstrations": [], "confirm_score": None}  # fmt: skip
    (search / "search.json").write_text(json.dumps({
        "dev_size": 40, "candidates": [candidate], "best": candidate, "output": "single", "seed_dev": 0.6,
        "adoption": {"adopted": False, "difference": 0.1, "low": -0.05, "high": 0.2, "p_value": 0.2,
                     "disagreements": 4, "n": 50, "level": 0.95},
    }))  # fmt: skip
    (search / "task.yaml").write_text("name: found\nmodel: tiny\n")
    damaged = tmp_path / "broken"
    damaged.mkdir()
    (damaged / "run.json").write_text("{not json")
    runs = {r.id: r for r in RunsRoot(tmp_path).runs()}
    assert runs["search-1"].kind == "search" and runs["search-1"].value == 0.75 and "own prompt kept" in runs[
        "search-1"].setting  # fmt: skip
    assert runs["broken"].kind == "damaged"


# ------------------------------------------------------------------ examples and comparison


def test_rows_of_every_kind_become_one_example_shape() -> None:
    classification = example_view(0, {"example": {"text": "hi", "label": "a"}, "gold": "a", "predicted": "b",
                                       "correct": False, "probabilities": {"a": 0.3, "b": 0.7}})  # fmt: skip
    assert (classification.input, classification.correct, classification.gold_probability) == ("hi", False, 0.3)
    cot = example_view(1, {"question": "2+2?", "gold": "4", "answers": {"strict": None, "flexible": "4"},
                           "correct": {"strict": False, "flexible": True}, "votes": {"flexible": {"4": 3}},
                           "agreement": 0.6, "rationales": ["2+2=4"]})  # fmt: skip
    assert (cot.predicted, cot.correct, cot.votes, cot.rationales) == ("4", True, {"4": 3}, ["2+2=4"])
    assert cot.gold_probability == 1.0  # every vote reached the gold answer
    wrong = example_view(3, {"question": "q", "gold": "18", "answers": {"flexible": "96"}, "agreement": 0.8,
                             "correct": {"flexible": False}, "votes": {"flexible": {"96": 4, "18": 1}}})  # fmt: skip
    assert wrong.gold_probability == pytest.approx(0.2)  # the share of votes for the gold answer, not agreement
    generated = example_view(2, {"example": {"question": "q", "answer": "x"}, "prompt": "p", "output": " y",
                                 "answer": "y", "references": ["x"], "score": 0.4})  # fmt: skip
    assert (generated.input, generated.correct, generated.score) == ("q", None, 0.4)


def test_pages_put_the_worst_examples_first_and_bound_what_is_sent() -> None:
    examples = [Example(i, f"text {i}", "a", "a" if i % 3 else "b", bool(i % 3), gold_probability=(i % 100) / 100)
                for i in range(12_000)]  # fmt: skip
    first, pages = page(examples)
    assert len(first) == PAGE_SIZE and pages == -(-12_000 // PAGE_SIZE)
    assert all(e.correct is False for e in first) and first[0].gold_probability == 0.0
    wrong, wrong_pages = page(examples, wrong_only=True, number=10**6)
    assert wrong_pages == -(-4000 // PAGE_SIZE) and all(e.correct is False for e in wrong)


def test_the_comparison_counts_wins_and_tests_them() -> None:
    def run(right: list[bool]) -> list[Example]:
        return [Example(i, f"x{i}", "a", "a" if r else "b", r) for i, r in enumerate(right)]

    base = run([True] * 10 + [False] * 30)
    better = run([True] * 10 + [True] * 20 + [False] * 10)  # 20 wins, no loss: McNemar p = 2 * 0.5**20
    comparison = compare_examples(["base", "better"], [base, better])
    difference = comparison.differences[1]
    assert (difference.wins, difference.losses) == (20, 0)
    assert difference.difference == pytest.approx(0.5) and difference.p_value == pytest.approx(2 * 0.5**20)
    assert difference.low > 0 and len(comparison.disagreements()) == 20
    with pytest.raises(Exception, match="same eval data"):
        compare_examples(["base", "short"], [base, base[:5]])
    with pytest.raises(Exception, match="between 2 and"):
        compare_examples(["base"], [base])


# ------------------------------------------------------------------ over HTTP


def test_pages_need_the_key_and_a_browser_signs_in_once(ui_server) -> None:
    page_url = ui_server.url + "/ui/"
    assert httpx.get(page_url, follow_redirects=False).status_code == 303  # to the sign-in page
    assert httpx.post(ui_server.url + "/ui/render", json={}).status_code == 401
    with httpx.Client(base_url=ui_server.url, follow_redirects=False) as browser:
        refused = browser.post("/ui/login", data={"key": "wrong", "next": "/ui/"})
        assert refused.status_code == 401 and "not accepted" in refused.text
        signed = browser.post("/ui/login", data={"key": API_KEY, "next": "https://evil.example/"})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/"  # never another site
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and API_KEY.lower() not in cookie
        assert browser.get("/ui/").status_code == 200
        body = {"template": "{{ text }}", "input": {"text": "hi"}, "model": "tiny"}
        # a cookie alone does not authorise a POST (a cross-site form could send it); the UI's header does
        assert browser.post("/ui/render", json=body).status_code == 401
        assert browser.post("/ui/render", json=body, headers={"x-promptlearning-ui": "1"}).status_code == 200
        browser.post("/ui/logout")
        assert browser.get("/ui/").status_code == 303


def test_run_content_is_escaped(ui_server, ui_runs: Path) -> None:
    for run_id in demo_runs(ui_runs):
        text = get(ui_server, "/ui/run", id=run_id, order="index").text
        assert "<script>window.__xss" not in text and "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in text
        assert "<b>bold</b>" not in text


def test_files_are_only_the_runs_own_plots(ui_server, ui_runs: Path) -> None:
    run_id = demo_runs(ui_runs)[0]
    page = get(ui_server, "/ui/run", id=run_id)
    assert page.status_code == 200 and "SECRET" not in page.text  # its report.md links outside: not read
    assert get(ui_server, "/ui/run", id="linked-files").status_code == 400
    plot = get(ui_server, "/ui/file", run=run_id, name="confusion_matrix.png")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    for name in ("linked.png", "../../outside/leak.png", "config.yaml", "predictions.jsonl"):
        assert get(ui_server, "/ui/file", run=run_id, name=name).status_code == 404, name
    assert get(ui_server, "/ui/file", run="linked-run", name="leak.png").status_code == 400


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/ui/run", {"id": "../outside"}, 400, ("relative path",)),
        ("/ui/run", {"id": "linked-run"}, 400, ("symbolic link",)),
        ("/ui/run", {"id": "missing"}, 404, ("no run",)),
        ("/ui/run", {"id": "demo"}, 400, ("not a run directory",)),
        ("/ui/run", {"id": "training/live-run", "order": "random"}, 400, ("order",)),
        ("/ui/run", {"id": "training/live-run", "page": "0"}, 422, ()),
        ("/ui/run", {"id": "training/live-run", "part": "seed-7"}, 404, ("no predictions", "it has none")),
        ("/ui/run", {"id": "x" * 2000}, 422, ()),
        ("/ui/run", {}, 422, ()),
        ("/ui/compare", {"run": ["training/live-run", "searches/movies-search"]}, 400, ("no per-example predictions",)),
        ("/ui/compare", {}, 400, ("between 2 and",)),
        ("/ui/compare", {"run": [f"missing-{i}" for i in range(9)]}, 422, ("at most 8",)),
        ("/ui/compare", {"run": ["training/live-run", "training/live-run"]}, 400, ("not 1",)),
        ("/ui/file", {"run": "/etc", "name": "passwd"}, 400, ("relative path",)),
        ("/ui/progress", {"id": "../x"}, 400, ()),
        ("/ui/static/../app.py", {}, 404, ()),
        ("/ui/static/nope.js", {}, 404, ()),
    ],
)  # fmt: skip
def test_bad_ui_request(ui_server, path, params, status, words) -> None:
    response = get(ui_server, path, **params)
    assert response.status_code == status, response.text
    assert "Traceback" not in response.text
    for word in words:
        assert word in response.text


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/ui/render", {"template": "{{ text.__class__ }}", "input": {"text": "x"}}, 400, ("unsafe",)),
        ("/ui/render", {"template": "{{ txt }}", "input": {"text": "x"}}, 400, ("txt",)),
        ("/ui/render", {"template": "{{ text }}", "input": {"text": 5}}, 422, ()),
        ("/ui/render", {"template": "", "input": {}}, 422, ()),
        ("/ui/render", {"template": "{{ text }}", "input": {"text": "x"}, "model": "nope"}, 404, ("unknown model",)),
        ("/ui/render", {"template": "{{ text }}", "input": {"text": "x"}, "extra": 1}, 422, ()),
        ("/ui/export", {"template": "{{ text }}", "words": {"a": [" x"]}}, 422, ()),
        ("/ui/export", {"template": "{{ text }}", "words": {"a": [" x"], "b": [" x"]}}, 400, ("both",)),
        ("/ui/export", {"template": "{% for %}", "words": {"a": [" x"], "b": [" y"]}}, 400, ()),
        ("/ui/export", {"template": "{{ text }}", "words": {"a": [" x"], "b": [" y"]}, "calibration": "magic"},
         422, ()),
    ],
)  # fmt: skip
def test_bad_playground_request(ui_server, path, body, status, words) -> None:
    response = httpx.post(ui_server.url + path, json=body, headers=HEADERS, timeout=30)
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert "Traceback" not in message
    for word in words:
        assert word in message, message


def test_the_exported_task_file_runs(ui_server, tmp_path: Path) -> None:
    from promptlearning.tasks import load_task

    body = {"template": "review : {{ text }}\nsentiment :", "words": {"negative": [" negative"],
            "positive": [" positive", " great"]}, "calibration": "contextual", "model": "tiny"}  # fmt: skip
    response = httpx.post(ui_server.url + "/ui/export", json=body, headers=HEADERS, timeout=30)
    assert response.status_code == 200
    path = tmp_path / "exported.yaml"
    path.write_text(response.text)
    config = load_task(path)
    assert config.template.input == body["template"] and config.calibration == "contextual"


def test_a_live_run_reports_its_progress(ui_server, ui_runs: Path) -> None:
    state = get(ui_server, "/ui/progress", id="training/live-run").json()
    assert state["status"] == "running" and state["step"] == 20 and state["max_steps"] == 100
    assert state["parts"]["seed-13"]["history"] == [{"step": 20, "accuracy": 0.5}]
    finished = get(ui_server, "/ui/progress", id=demo_runs(ui_runs)[0]).json()
    assert finished == {"status": "finished"}


def test_a_training_run_offers_each_seeds_predictions(tmp_path: Path) -> None:
    run = tmp_path / "trained"
    for seed in ("seed-100", "seed-13"):
        (run / seed).mkdir(parents=True)
        row = {"example": {"text": seed}, "gold": "a", "predicted": "a", "correct": True, "probabilities": {"a": 1.0}}
        (run / seed / "predictions.jsonl").write_text(json.dumps(row) + "\n")
    (run / "run.json").write_text(json.dumps({"kind": "train", "name": "t", "setting": "pet", "model": "m",
                                              "metric": "accuracy", "value": 1.0, "values": [1.0, 1.0]}))  # fmt: skip
    root = RunsRoot(tmp_path)
    assert list(root.prediction_parts(run)) == ["seed-13", "seed-100"]
    assert root.predictions_file(run).parent.name == "seed-13" and root.runs()[0].has_predictions
    assert root.predictions_file(run, "seed-100").parent.name == "seed-100"
    with pytest.raises(RunPathError, match="no predictions 'seed-7'"):
        root.predictions_file(run, "seed-7")


def test_the_input_shown_is_what_the_template_reads(ui_runs: Path) -> None:
    root = RunsRoot(ui_runs)
    run = root.resolve(demo_runs(ui_runs)[0])
    assert root.input_fields(run) == ("text",)
    row = {"example": {"text": "hi", "kind": "irony", "label": "a"}, "gold": "a", "predicted": "a", "correct": True,
           "probabilities": {"a": 1.0}}  # fmt: skip
    assert example_view(0, row, ("text",)).input == "hi"
    assert example_view(0, row).input == "text: hi\nkind: irony"


def test_generation_runs_are_compared_by_their_scores() -> None:
    def run(scores: list[float]) -> list[Example]:
        return [Example(i, f"x{i}", "ref", "out", None, score=s) for i, s in enumerate(scores)]

    comparison = compare_examples(["a", "b"], [run([0.2] * 30), run([0.5] * 25 + [0.1] * 5)])
    difference = comparison.differences[1]
    assert (difference.wins, difference.losses) == (25, 5)
    assert difference.difference == pytest.approx((25 * 0.3 - 5 * 0.1) / 30)
    assert difference.low > 0 and difference.p_value < 0.01


def test_a_training_run_that_stopped_writing_is_shown_as_stopped(tmp_path: Path, live_run_maker) -> None:
    import os

    live = tmp_path / "crashed"
    live_run_maker(live)
    root = RunsRoot(tmp_path)
    assert root.runs()[0].status == "running"
    state = live / "seed-13" / "checkpoints" / "step-0000020" / "trainer_state.json"
    an_hour_ago = state.stat().st_mtime - 3600
    os.utime(state, (an_hour_ago, an_hour_ago))
    summary = root.runs()[0]
    assert summary.status == "stopped" and summary.setting == "stopped before the end"
    assert root.progress(live).state == "stopped" and root.progress(live).current == "seed-13"


def test_an_ensemble_or_rationale_run_in_progress_is_live_too(tmp_path: Path) -> None:
    import os

    run = tmp_path / "ensemble"
    (run / "config.yaml").parent.mkdir()
    (run / "config.yaml").write_text("type: train\nname: ens\ntraining: {max_steps: 50}\n")
    for part, step, age in (("seed-13/member-1", 50, 120), ("seed-13/member-2", 25, 0)):
        state = run / part / "checkpoints" / f"step-{step:07d}" / "trainer_state.json"
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"step": step, "history": [{"step": step, "accuracy": step / 100}]}))
        os.utime(state, (state.stat().st_mtime - age, state.stat().st_mtime - age))
    rationale = tmp_path / "rationale" / "training" / "checkpoints" / "step-0000010"
    rationale.mkdir(parents=True)
    (rationale / "trainer_state.json").write_text(json.dumps({"step": 10, "history": []}))
    (tmp_path / "rationale" / "config.yaml").write_text("type: train\nname: r\n")
    root = RunsRoot(tmp_path)
    runs = {r.id: r for r in root.runs()}
    assert runs["ensemble"].status == "running" and runs["ensemble"].value == 0.25  # the member training now
    progress = root.progress(run)
    assert progress.current == "seed-13/member-2" and progress.step == 25 and set(progress.parts) == {
        "seed-13/member-1", "seed-13/member-2"}  # fmt: skip
    assert runs["rationale"].status == "running" and set(root.progress(tmp_path / "rationale").parts) == {"training"}


def test_a_search_shows_its_candidates_and_verdict_and_its_runs_are_listed(ui_server, ui_runs: Path) -> None:
    runs = {r.id: r for r in RunsRoot(ui_runs).runs()}
    assert runs["searches/movies-search"].kind == "search"
    nested = [run_id for run_id in runs if run_id.startswith("searches/movies-search/runs/")]
    assert nested and all(runs[run_id].num_examples == 24 for run_id in nested)
    candidates = json.loads((ui_runs / "searches" / "movies-search" / "search.json").read_text())["candidates"]
    text = get(ui_server, "/ui/run", id="searches/movies-search").text
    assert "Candidates, best on dev first" in text and text.count("<tr><td>words</td>") + text.count(
        "<tr><td>templates</td>") == len(candidates)  # fmt: skip
    assert "Adopted" in text or "Not adopted" in text


def test_a_graded_metric_has_no_right_or_wrong_even_where_it_scores_one(tmp_path: Path) -> None:
    from promptlearning.ui.examples import PredictionReader

    rows = [{"example": {"q": "a"}, "output": "x", "answer": "x", "references": ["x"], "score": s}
            for s in (1.0, 0.5, 0.0)]  # fmt: skip
    path = tmp_path / "predictions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [e.correct for e in PredictionReader().examples(path)] == [None, None, None]
    path.write_text("".join(json.dumps({**r, "score": float(i % 2)}) + "\n" for i, r in enumerate(rows)))
    assert [e.correct for e in PredictionReader().examples(path)] == [False, True, False]  # exact match


def test_damaged_run_files_never_cause_a_500(start, tmp_path: Path, live_run_maker) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text(json.dumps({"kind": "classification", "name": "bad", "setting": "s", "model": "m",
                                              "metric": "accuracy", "value": 0.5, "values": [0.5]}))  # fmt: skip
    row = b'{"example": {"text": "\xff\xfe"}, "gold": "a", "predicted": "a", "correct": true, ' \
          b'"probabilities": {"a": 1}}'  # fmt: skip
    (bad / "predictions.jsonl").write_bytes(row + b"\n{not json\n[1, 2]\n")
    (bad / "report.md").write_bytes(b"# report\n\xff\xfe broken bytes")
    (bad / "metrics.json").write_bytes(b"\xff")
    live_run_maker(tmp_path / "live")
    next((tmp_path / "live").rglob("trainer_state.json")).write_bytes(b"\xff{")
    server = start(ui_runs=tmp_path)
    for path, params in [("/ui/", {}), ("/ui/run", {"id": "bad"}), ("/ui/run", {"id": "bad", "order": "index"}),
                         ("/ui/run", {"id": "live"}), ("/ui/progress", {"id": "live"}),
                         ("/ui/compare", {"run": ["bad", "live"]})]:  # fmt: skip
        response = get(server, path, **params)
        assert response.status_code < 500, (path, params, response.text)
    page = get(server, "/ui/run", id="bad", order="index").text
    assert "3 examples" in page and "not JSON" in page


def test_no_path_text_leaves_the_runs_root(ui_runs: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    root = RunsRoot(ui_runs)
    parts = st.sampled_from(["..", ".", "demo", "linked-run", "training", "live-run", "", "/", "\\", "~", "%2e%2e",
                             "\x00", "outside", "searches"])  # fmt: skip

    @settings(max_examples=300, deadline=None)
    @given(st.lists(parts, max_size=6).map("/".join) | st.text(max_size=40))
    def never_outside(text: str) -> None:
        try:
            path = root.resolve(text)
        except RunPathError:
            return
        assert path.resolve().is_relative_to(root.root) and path.resolve() != root.root

    never_outside()


def test_the_ui_command_serves_a_folder_open_on_loopback(ui_runs: Path, tiny_llama_dir: Path) -> None:
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "promptlearning.cli", "ui", str(ui_runs), "--port", str(port),
               "--model", str(tiny_llama_dir)]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        page = httpx.get(f"http://127.0.0.1:{port}/ui/", timeout=10)  # no key: open on loopback
        assert page.status_code == 200 and "demo/reviews-zero-shot" in page.text
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert f"web UI over {ui_runs} at http://127.0.0.1:{port}/ui/ (open on loopback)" in err


def test_a_flood_of_pages_and_clients_that_hang_up_leave_the_api_answering(start, tmp_path: Path) -> None:
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    big = tmp_path / "big"
    big.mkdir()
    (big / "run.json").write_text(json.dumps({"kind": "classification", "name": "big", "setting": "s", "model": "m",
                                              "metric": "accuracy", "value": 0.5, "values": [0.5]}))  # fmt: skip
    rows = [{"example": {"text": f"review {i} " * 8}, "gold": "a", "predicted": "ab"[i % 2], "correct": i % 2 == 0,
             "probabilities": {"a": 0.5, "b": 0.5}} for i in range(12_000)]  # fmt: skip
    (big / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    server = start(ui_runs=tmp_path)
    host, port = server.url.removeprefix("http://").split(":")
    request = f"GET /ui/run?id=big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\n\r\n".encode()
    for _ in range(5):  # clients that send a request and go away before the answer
        with socket.create_connection((host, int(port))) as hang_up:
            hang_up.sendall(request)
    with ThreadPoolExecutor(40) as pool:
        pages = [pool.submit(get, server, "/ui/run", id="big", page=i + 1) for i in range(40)]
        started = time.monotonic()
        answer = httpx.post(server.base_url + "/completions", json={"model": "tiny", "prompt": "x", "max_tokens": 2},
                            headers=HEADERS, timeout=60)  # fmt: skip
        api_seconds = time.monotonic() - started
        statuses = {future.result().status_code for future in pages}
    assert answer.status_code == 200 and api_seconds < 10, api_seconds
    assert statuses == {200}
    assert "12000 examples" in get(server, "/ui/run", id="big").text
