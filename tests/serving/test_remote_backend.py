"""The openai backend against our own server: the same numbers as the local backend."""

from __future__ import annotations

import pytest

from promptlearning.models import GenerationConfig, load_model

API_KEY = "test-key-0123"  # the key conftest.py's servers accept


@pytest.fixture(scope="module")
def remote(server, tiny_llama_dir, monkeypatch_module):
    monkeypatch_module.setenv("PL_TEST_KEY", API_KEY)
    return load_model("tiny", backend="openai", base_url=server.base_url, api_key_env="PL_TEST_KEY",
                      tokenizer=str(tiny_llama_dir))  # fmt: skip


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_remote_loglikelihood_equals_local(remote, tiny_lm) -> None:
    requests = [("The movie was", " great"), ("The movie was ", "great fun"), ("", "hello"),
                ("Review: dull\nSentiment:\n", "negative"), ("The movie was", " great")]  # fmt: skip
    for got, want in zip(remote.loglikelihood(requests), tiny_lm.loglikelihood(requests), strict=True):
        assert got.logprob == pytest.approx(want.logprob, abs=1e-4)
        assert got.num_tokens == want.num_tokens
        assert got.is_greedy == want.is_greedy


def test_remote_generation_equals_local(remote, tiny_lm) -> None:
    prompts = ["Once upon", "The movie was", "a b c"]
    config = GenerationConfig(max_new_tokens=8)
    assert [g.text for g in remote.generate(prompts, config)] == [g.text for g in tiny_lm.generate(prompts, config)]
    samples = remote.sample(["Once upon"], GenerationConfig(max_new_tokens=4, temperature=0.9, seed=3), n=3)
    assert len(samples[0]) == 3
    assert remote.count_tokens("hello world") == tiny_lm.count_tokens("hello world")
    reply = remote.chat([{"role": "user", "content": "hi"}], GenerationConfig(max_new_tokens=4))
    assert isinstance(reply.text, str)


def test_calculator_decoding_through_the_server_continues_as_local_decoding_does(remote, tiny_lm) -> None:
    prompts = ["go:<<2+2=", "the cat sat <<7*8=", "Once upon"]
    config = GenerationConfig(max_new_tokens=8, calculator=True)
    there, here = remote.generate(prompts, config), tiny_lm.generate(prompts, config)
    assert there[0].text.startswith("4>>") and there[1].text.startswith("56>>")
    assert [g.text for g in there] == [g.text for g in here]
    sampled = GenerationConfig(max_new_tokens=6, calculator=True, temperature=0.9, seed=2)
    first = remote.sample(prompts[:1], sampled, n=2)
    assert first == remote.sample(prompts[:1], sampled, n=2) and all(g.text.startswith("4>>") for g in first[0])


def test_a_server_names_the_stop_string_that_ended_a_completion(server) -> None:
    import httpx

    body = {"model": "tiny", "prompt": "the cat sat on the", "max_tokens": 12, "temperature": 0}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    free = httpx.post(f"{server.base_url}/completions", json=body, headers=headers, timeout=30).json()["choices"][0]
    assert free["stop_reason"] is None
    stop = free["text"][2:4]  # a stop string that the greedy text contains
    stopped = httpx.post(f"{server.base_url}/completions", json={**body, "stop": ["zzz", stop]}, headers=headers,
                         timeout=30).json()["choices"][0]  # fmt: skip
    assert stopped["finish_reason"] == "stop" and stopped["stop_reason"] == stop


def test_channel_scoring_and_ensembles_through_the_remote_backend(remote, tiny_lm) -> None:
    from promptlearning.methods.spec import ClassifierSpec, build_classifier

    spec = ClassifierSpec(template={"input": "Review: {{ text }}\nSentiment:"},
                          verbalizer={"words": {"negative": " bad", "positive": " good"}}, scoring="channel",
                          shots=1, selection="first", ensemble=[{}, {"scoring": "direct"}])  # fmt: skip
    pool = [{"text": "a dull film", "label": "negative"}, {"text": "lovely", "label": "positive"}]
    inputs = [{"text": "the cat sat"}, {"text": "a fine movie"}]
    here = build_classifier(spec, tiny_lm).fit(pool).predict(inputs)
    there = build_classifier(spec, remote).fit(pool).predict(inputs)
    for a, b in zip(there, here, strict=True):
        assert a.label == b.label and a.probabilities == pytest.approx(b.probabilities, abs=1e-4)


def test_a_classification_task_runs_through_the_remote_backend(server, tiny_llama_dir, tmp_path, monkeypatch) -> None:
    import json

    from promptlearning.tasks import load_task, run_task

    rows = [{"text": t, "label": lab} for t, lab in [("great film", "positive"), ("dull film", "negative"),
                                                      ("loved it", "positive"), ("awful", "negative")]]  # fmt: skip
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = tmp_path / "task.yaml"
    task.write_text(f"""type: classification
name: remote
model: {tiny_llama_dir}
data: {{root: {tmp_path}, eval: eval.jsonl}}
template: {{input: "Review: {{{{ text }}}}\\nSentiment:"}}
verbalizer: {{words: {{negative: " bad", positive: " good"}}}}
method: {{calibrate: false}}
""")
    local = run_task(load_task(task), write=False)
    monkeypatch.setenv("PL_TEST_KEY", API_KEY)
    overrides = ["backend=openai", f"base_url={server.base_url}", "api_key_env=PL_TEST_KEY", "model=tiny",
                 f"tokenizer={tiny_llama_dir}"]  # fmt: skip
    result = run_task(load_task(task, overrides), output_dir=tmp_path / "runs")
    assert [p.label for p in result.evaluation.predictions] == [p.label for p in local.evaluation.predictions]
    written = (result.run_dir / "config.yaml").read_text()
    assert API_KEY not in written and "PL_TEST_KEY" in written


def test_clear_errors_without_a_server_or_tokenizer(tiny_llama_dir) -> None:
    from promptlearning.errors import PromptLearningError, UnsupportedOperationError

    with pytest.raises(PromptLearningError, match="base_url"):
        load_model("tiny", backend="openai")
    nowhere = load_model("tiny", backend="openai", base_url="http://127.0.0.1:9/v1", tokenizer=str(tiny_llama_dir),
                         max_retries=0, timeout=2)  # fmt: skip
    with pytest.raises(PromptLearningError, match="could not reach"):
        nowhere.generate(["hi"])
    untokenized = load_model("somebody/remote-model", backend="openai", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(UnsupportedOperationError, match="tokenizer"):
        untokenized.loglikelihood([("a", " b")])


# ----------------------------------------------------------------------------- issue 28: a broken peer


def _broken_peer_app():
    """An OpenAI-compatible server gone wrong, one way per model name (a real HTTP server: the
    backend must cope with what such servers send)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def logprobs(values):
        return {"tokens": ["x"] * len(values), "token_logprobs": values, "top_logprobs": [None] * len(values),
                "text_offset": [0] * len(values)}  # fmt: skip

    async def completions(request: Request):
        body = await request.json()
        kind = body["model"]
        if kind == "hang":
            await asyncio.sleep(3600)
        if kind == "html":
            return HTMLResponse("<html><body>502 Bad Gateway</body></html>")
        if kind == "not-json":
            return Response(b"this is not json", media_type="application/json")
        if kind == "empty":
            return JSONResponse({"id": "x", "object": "text_completion", "choices": []})
        if kind == "no-text":
            return JSONResponse({"id": "x", "object": "text_completion", "choices": [{"index": 0}]})
        if kind == "no-stop-reason":  # a stop string ended it, but which one is not said
            return JSONResponse({"id": "x", "object": "text_completion",
                                 "choices": [{"index": 0, "text": "<<2+2", "finish_reason": "stop"}]})  # fmt: skip
        length = len(body["prompt"]) + 1
        value = {"nan": float("nan"), "positive": 0.7}[kind]
        content = {
            "id": "x",
            "object": "text_completion",
            "model": kind,
            "choices": [
                {
                    "index": 0,
                    "text": "x",
                    "finish_reason": "length",
                    "logprobs": logprobs([None] + [value] * (length - 1)),
                }
            ],
        }
        import json

        return Response(json.dumps(content).encode(), media_type="application/json")  # NaN as Python writes it

    return Starlette(routes=[Route("/v1/completions", completions, methods=["POST"])])


@pytest.fixture(scope="module")
def broken_peer():
    import socket
    import threading

    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(_broken_peer_app(), log_level="error"))
    server.install_signal_handlers = lambda: None
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        import time

        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    server.should_exit = True
    thread.join(5)


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("html", "not an OpenAI completion"),
        ("not-json", "not an OpenAI completion"),
        ("empty", "no choices"),
        ("no-text", "without its text"),
        ("nan", "nan"),
        ("positive", "0.7"),
    ],
)
def test_malformed_answers_are_errors_naming_the_server(broken_peer, tiny_llama_dir, kind, words) -> None:
    from promptlearning.models.openai import RemoteServerError

    model = load_model(kind, backend="openai", base_url=broken_peer, tokenizer=str(tiny_llama_dir), timeout=10)
    call = (lambda: model.generate(["hi"])) if kind in ("html", "not-json", "empty", "no-text") else (
        lambda: model.loglikelihood([("the movie was", " great")]))  # fmt: skip
    with pytest.raises(RemoteServerError) as error:
        call()
    assert broken_peer in str(error.value) and words in str(error.value)


def test_calculator_decoding_needs_a_server_that_names_the_stop(broken_peer, tiny_llama_dir) -> None:
    from promptlearning.errors import UnsupportedOperationError

    model = load_model("no-stop-reason", backend="openai", base_url=broken_peer, tokenizer=str(tiny_llama_dir))
    assert model.generate(["hi"])[0].text == "<<2+2"  # without the calculator, any server does
    with pytest.raises(UnsupportedOperationError, match="stop_reason"):
        model.generate(["hi"], GenerationConfig(calculator=True))


def test_a_server_that_never_answers_times_out(broken_peer, tiny_llama_dir) -> None:
    import time

    from promptlearning.models.openai import RemoteServerError

    model = load_model("hang", backend="openai", base_url=broken_peer, tokenizer=str(tiny_llama_dir), timeout=1.5)
    start = time.monotonic()
    with pytest.raises(RemoteServerError, match="did not answer within 1.5 s"):
        model.generate([f"prompt {i}" for i in range(20)])
    assert time.monotonic() - start < 6


def test_connection_refused_fails_fast_once(tiny_llama_dir) -> None:
    import socket
    import time

    from promptlearning.models.openai import RemoteServerError

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    model = load_model("tiny", backend="openai", base_url=f"http://127.0.0.1:{port}/v1", tokenizer=str(tiny_llama_dir))
    start = time.monotonic()
    with pytest.raises(RemoteServerError, match="could not reach"):
        model.loglikelihood([(f"example {i}", " great") for i in range(40)])
    assert time.monotonic() - start < 5  # the retries of one request, not of forty (147 s before)


def test_an_embedded_tokenizer_name_resolves_locally(isolated_home, tiny_llama_dir, fake_model_installer) -> None:
    import socket

    fake_model_installer(isolated_home, "smollm2-135m-instruct", tiny_llama_dir)
    real_connect = socket.socket.connect

    def no_network(self, address):  # loopback is the test's own; anything else would be the hub
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1", "localhost"):
            raise AssertionError(f"went online: {address}")
        return real_connect(self, address)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", no_network)
        model = load_model("remote-name", backend="openai", base_url="http://127.0.0.1:9/v1",
                           tokenizer="smollm2-135m-instruct")  # fmt: skip
        assert model.count_tokens("hello world") > 0
    with pytest.raises(Exception, match="neither an embedded model"):
        load_model("x", backend="openai", base_url="http://127.0.0.1:9/v1", tokenizer="/no/such/dir").count_tokens("a")
