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

    rows = [json.loads(line) for line in (DATA / "sst2" / "dev.jsonl").read_text().splitlines()[:200]]
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
