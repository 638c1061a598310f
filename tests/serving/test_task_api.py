"""Program prediction, inline classification and chain-of-thought over HTTP."""

from __future__ import annotations

import threading

import httpx
import pytest

API_KEY = "test-key-0123"  # the key conftest.py's servers accept
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
TEMPLATE = "Review: {{ text }}\nSentiment:"
WORDS = {"negative": " bad", "positive": " good"}
INPUTS = [{"text": t} for t in ["a fine film", "dull and slow", "I loved it", "the plot was thin"]]


def test_a_saved_program_predicts_as_it_does_locally(server, served) -> None:
    programs = httpx.get(server.base_url + "/programs", headers=HEADERS).json()
    assert programs["data"][0]["id"] == "sentiment" and programs["data"][0]["inputs"] == ["text"]
    out = httpx.post(server.base_url + "/programs/sentiment/predict", json={"inputs": INPUTS}, headers=HEADERS)
    assert out.status_code == 200, out.text
    local = served.programs["sentiment"].predict(INPUTS)
    for got, want in zip(out.json()["predictions"], local, strict=True):
        assert got["label"] == want.label
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)


def test_classify_equals_a_local_prompt_classifier(server, tiny_lm) -> None:
    from promptlearning.methods.classifier import PromptClassifier
    from promptlearning.prompts.template import PromptTemplate
    from promptlearning.prompts.verbalizer import Verbalizer

    local = PromptClassifier(tiny_lm, PromptTemplate(TEMPLATE), Verbalizer(WORDS)).fit().predict(INPUTS)
    body = {"template": TEMPLATE, "verbalizer": WORDS, "inputs": INPUTS}
    out = httpx.post(server.base_url + "/classify", json=body, headers=HEADERS).json()
    for got, want in zip(out["predictions"], local, strict=True):
        assert got["label"] == want.label
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
    demos = [{"text": "great", "label": "positive"}, {"text": "awful", "label": "negative"}]
    few = httpx.post(server.base_url + "/classify", json={**body, "demonstrations": demos}, headers=HEADERS)
    assert few.status_code == 200 and len(few.json()["predictions"]) == len(INPUTS)


def test_concurrent_classify_requests_share_model_calls(server, tiny_lm) -> None:
    body = {"template": TEMPLATE, "verbalizer": WORDS}
    alone = [httpx.post(server.base_url + "/classify", json={**body, "inputs": [x]}, headers=HEADERS).json()
             for x in INPUTS]  # fmt: skip
    together: dict[int, dict] = {}

    def send(i: int) -> None:
        together[i] = httpx.post(server.base_url + "/classify", json={**body, "inputs": [INPUTS[i]]},
                                 headers=HEADERS, timeout=60).json()  # fmt: skip

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(INPUTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(alone):
        got, want = together[i]["predictions"][0], expected["predictions"][0]
        assert got["label"] == want["label"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-4)


def test_solve_returns_answers_votes_and_rationales(server) -> None:
    body = {"questions": ["What is 2 + 3?", {"question": "What is 4 + 4?"}], "mode": "zero-shot-cot", "samples": 3,
            "max_tokens": 8, "temperature": 0.8}  # fmt: skip
    out = httpx.post(server.base_url + "/solve", json=body, headers=HEADERS, timeout=120)
    assert out.status_code == 200, out.text
    solutions = out.json()["solutions"]
    assert len(solutions) == 2
    for solution in solutions:
        assert len(solution["rationales"]) == 3
        assert sum(solution["votes"].values()) <= 3


def test_a_served_prompt_program_keeps_within_its_own_max_length(start, tiny_lm) -> None:
    from promptlearning.serving import ServedModels
    from promptlearning.training.program import ProgramSpec
    from promptlearning.training.prompted import PromptedProgram

    spec = ProgramSpec(objective="prompt", model="tiny", labels=["negative", "positive"],
                       template={"input": "review : {{ text }}\nsentiment :", "shorten": "text"},
                       verbalizer={"label_words": {"negative": " bad", "positive": " good"}},
                       max_length=24)  # fmt: skip
    program = PromptedProgram(spec, tiny_lm)
    long_input = {"text": "the movie was long and slow " * 12}  # ~70 tokens: over 24, within the model's 128
    assert tiny_lm.count_tokens(program.classifier.prompt(long_input)) <= 24
    models = ServedModels(text={"tiny": tiny_lm}, programs={"short": program})
    models.loaded.set()
    server = start(models)
    response = httpx.post(server.base_url + "/programs/short/predict", json={"inputs": [long_input]},
                          headers={"Authorization": "Bearer test-key-0123"}, timeout=60)  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == program.predict([long_input])[0].label
