"""Program prediction, inline classification and chain-of-thought over HTTP."""

from __future__ import annotations

import threading

import httpx
import pytest
import torch

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


def test_an_ensemble_program_is_served_as_one(start, tiny_lm, tiny_program_dir, tmp_path) -> None:
    from promptlearning.serving import ServedModels
    from promptlearning.training.ensemble_program import EnsembleProgram
    from promptlearning.training.program import build_program, load_program, read_program_spec

    spec = read_program_spec(tiny_program_dir)
    members = [(build_program(spec, seed=seed), weight) for seed, weight in [(1, 0.9), (2, 0.6)]]
    torch.manual_seed(0)
    with torch.no_grad():  # LoRA starts as a no-op: give the members different trained-looking weights
        for program, _ in members:
            for name, parameter in program.module.named_parameters():
                if "lora_B" in name:
                    parameter.normal_(0, 0.5)
    directory = EnsembleProgram.of(members, ["positive", "negative"]).save(tmp_path / "ensemble")
    ensemble = load_program(directory, device="cpu")  # a saved ensemble: its members load from inside it
    assert [m.labels for m, _ in ensemble.members] == [spec.labels] * 2 and ensemble.labels == ["positive", "negative"]
    alone = [m.predict(INPUTS) for m, _ in members]
    assert alone[0][0].probabilities != pytest.approx(alone[1][0].probabilities, abs=1e-3)
    for i, prediction in enumerate(ensemble.predict(INPUTS)):
        mean = {label: (0.9 * alone[0][i].probabilities[label] + 0.6 * alone[1][i].probabilities[label]) / 1.5
                for label in ensemble.labels}  # fmt: skip
        assert prediction.probabilities == pytest.approx(mean, abs=1e-5)
    models = ServedModels(text={"tiny": tiny_lm}, programs={"voters": ensemble})
    models.loaded.set()
    server = start(models)
    card = httpx.get(server.base_url + "/programs", headers=HEADERS).json()["data"][0]
    assert (card["objective"], card["inputs"], card["labels"]) == ("ensemble", ["text"], ["positive", "negative"])
    out = httpx.post(server.base_url + "/programs/voters/predict", json={"inputs": INPUTS}, headers=HEADERS)
    assert out.status_code == 200, out.text
    for got, want in zip(out.json()["predictions"], ensemble.predict(INPUTS), strict=True):
        assert got["label"] == want.label and got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5)
    missing = httpx.post(server.base_url + "/programs/voters/predict", json={"inputs": [{"review": "x"}]},
                         headers=HEADERS)  # fmt: skip
    assert missing.status_code == 400 and "no field 'text'" in missing.text
