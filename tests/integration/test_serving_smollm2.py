"""The server on the real SmolLM2, its clients (openai, the remote backend) and llama.cpp's
OpenAI-compatible server as the peer of the remote backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from promptlearning.models import GenerationConfig, load_model
from promptlearning.models.hub import pull

pytestmark = pytest.mark.integration
DATA = Path(os.environ.get("PROMPTLEARNING_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


@pytest.fixture(scope="module")
def smollm2():
    pull("smollm2-135m-instruct", progress=False)
    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def server(smollm2):
    from promptlearning.serving import ServedModels, ServerSettings, start_server

    served = ServedModels(text={"smollm2-135m-instruct": smollm2})
    served.loaded.set()
    running = start_server(ServerSettings(no_auth=True, port=0, embedding_model=None), served)
    yield running
    running.stop()


def test_the_openai_client_talks_to_smollm2(server) -> None:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
    out = client.completions.create(model="smollm2-135m-instruct", prompt="The capital of France is", max_tokens=4,
                                    temperature=0)  # fmt: skip
    assert "Paris" in out.choices[0].text
    question = [{"role": "user", "content": "What is the capital of France?"}]
    chat = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=24, temperature=0,
                                          messages=question)  # fmt: skip
    assert "Paris" in chat.choices[0].message.content


@pytest.mark.skipif(not (DATA / "sst2" / "dev.jsonl").is_file(), reason="needs ../shared/data/sst2")
def test_the_remote_backend_predicts_as_the_local_one_on_sst2(server, smollm2) -> None:
    from promptlearning.methods.classifier import PromptClassifier
    from promptlearning.prompts.template import PromptTemplate
    from promptlearning.prompts.verbalizer import Verbalizer

    rows = [json.loads(line) for line in (DATA / "sst2" / "dev.jsonl").read_text().splitlines()[:96]]
    remote = load_model("smollm2-135m-instruct", backend="openai", base_url=server.base_url)
    template, verbalizer = PromptTemplate("Review: {{ text }}\nSentiment:"), Verbalizer(
        {"negative": " negative", "positive": " positive"})  # fmt: skip
    local = PromptClassifier(smollm2, template, verbalizer).fit().predict(rows)
    through = PromptClassifier(remote, template, verbalizer).fit().predict(rows)
    assert [p.label for p in through] == [p.label for p in local]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_remote_backend_generates_through_llama_cpp_server(tmp_path) -> None:
    pytest.importorskip("llama_cpp.server", reason="needs the [llamacpp] extra with its server")
    from promptlearning.models import hub

    pull("smollm2-135m-instruct", progress=False)
    gguf = hub.model_dir("smollm2-135m-instruct") / "files" / hub.EMBEDDED_MODELS["smollm2-135m-instruct"].gguf_file
    port = _free_port()
    log = (tmp_path / "llama-server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
                                "--port", str(port), "--model_alias", "smollm2", "--n_ctx", "2048"],
                               stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "llama-server.log").read_text()[-2000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        remote = load_model("smollm2", backend="openai", base_url=f"http://127.0.0.1:{port}/v1",
                            tokenizer="smollm2-135m-instruct")  # fmt: skip
        [answer] = remote.generate(["Q: What is the capital of France?\nA:"], GenerationConfig(max_new_tokens=16))
        assert "Paris" in answer.text
        [stopped] = remote.generate(["Q: What is the capital of France?\nA:"],
                                    GenerationConfig(max_new_tokens=32, stop=["Paris"]))  # fmt: skip
        assert "Paris" not in stopped.text and stopped.finish_reason == "stop"
    finally:
        process.terminate()
        process.wait(30)


LM_EVAL_TASK = """
task: movie_reviews_promptlearning
dataset_path: json
dataset_kwargs:
  data_files:
    validation: {data}
validation_split: validation
output_type: multiple_choice
doc_to_text: "Review: {{{{text}}}}\\nSentiment:"
doc_to_target: "{{{{ ['negative', 'positive'].index(label) }}}}"
doc_to_choice: ["negative", "positive"]
metric_list:
  - metric: acc
"""


def test_lm_eval_local_completions_through_the_server_matches_its_hf_backend(server, tmp_path, monkeypatch) -> None:
    """lm-eval's ``local-completions`` (token-id echo + logprobs requests, remote tokenizer) against
    our server gives its own HF backend's accuracy, on the packaged movie-review sentiment set."""
    pytest.importorskip("lm_eval", reason="needs the [bench] extra")
    import lm_eval
    from lm_eval.tasks import TaskManager

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = Path(__file__).resolve().parents[2] / "src" / "promptlearning" / "data" / "movie_reviews" / "test.jsonl"
    rows = data.read_text().splitlines()[:32]
    (tmp_path / "rows.jsonl").write_text("\n".join(rows) + "\n")
    (tmp_path / "task.yaml").write_text(LM_EVAL_TASK.format(data=tmp_path / "rows.jsonl"))
    manager = TaskManager(include_path=str(tmp_path))

    def accuracy(model: str, model_args: str) -> float:
        results = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=["movie_reviews_promptlearning"],
                                          task_manager=manager, limit=len(rows))  # fmt: skip
        return results["results"]["movie_reviews_promptlearning"]["acc,none"]

    files = pull("smollm2-135m-instruct", progress=False)
    hf = accuracy("hf", f"pretrained={files},dtype=float32,device=cpu,batch_size=16")
    remote = accuracy("local-completions", f"model=smollm2-135m-instruct,base_url={server.base_url}/completions,"
                      "tokenizer_backend=remote,tokenized_requests=True,batch_size=16,num_concurrent=2")  # fmt: skip
    assert hf > 0.6  # the model is well above chance here, so agreement is not two coin flips
    assert abs(remote - hf) <= 0.005, (remote, hf)


TRAIN_TASK = """
type: train
name: tiny-sentiment
data: {{root: {root}, train: train.jsonl, dev: train.jsonl, eval: train.jsonl}}
model: smollm2-135m-instruct
objective: pet
template: {{mode: plain, input: "Review: {{{{ text }}}}\\nSentiment:"}}
verbalizer: {{words: {{negative: " negative", positive: " positive"}}}}
peft: {{method: lora, options: {{r: 8, lora_alpha: 16, target_modules: [q_proj, v_proj]}}}}
training: {{learning_rate: 1.0e-3, batch_size: 8, max_steps: 4, eval_every: 4}}
"""


def test_serve_a_program_trained_by_promptlearning_train(tmp_path, reviews) -> None:
    """`promptlearning train` writes a program; `promptlearning serve --program` serves it next to
    the model: its predictions over HTTP are the saved program's, and the openai client works."""
    import openai

    from promptlearning import load_program

    (tmp_path / "train.jsonl").write_text("".join(json.dumps(row) + "\n" for row in reviews))
    (tmp_path / "task.yaml").write_text(TRAIN_TASK.format(root=tmp_path))
    cli = [sys.executable, "-m", "promptlearning.cli"]
    done = subprocess.run([*cli, "train", str(tmp_path / "task.yaml"), "--output", str(tmp_path / "run"),
                           "--no-progress"], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    [program_dir] = (tmp_path / "run").glob("seed-*/program")
    port = _free_port()
    log = (tmp_path / "serve.log").open("w")
    serve = [*cli, "serve", "--no-auth", "--port", str(port), "--embedding-model", "none",
             "--program", f"sentiment={program_dir}"]  # fmt: skip
    process = subprocess.Popen(serve, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()[-2000:]
            try:
                if httpx.get(url + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        inputs = [{"text": row["text"]} for row in reviews]
        served = httpx.post(url + "/v1/programs/sentiment/predict", json={"inputs": inputs}, timeout=120).json()
        local = load_program(program_dir).predict(inputs)
        assert [p["label"] for p in served["predictions"]] == [p.label for p in local]
        for got, want in zip(served["predictions"], local, strict=True):
            assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-4)
        assert "sentiment" in [p["id"] for p in httpx.get(url + "/v1/programs").json()["data"]]
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        out = client.completions.create(model="smollm2-135m-instruct", prompt="The capital of France is",
                                        max_tokens=4, temperature=0)  # fmt: skip
        assert "Paris" in out.choices[0].text
    finally:
        process.terminate()
        process.wait(60)
