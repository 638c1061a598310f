"""The OpenAI-compatible endpoints through the official ``openai`` client, over real HTTP."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from promptlearning.models import GenerationConfig
from promptlearning.models.interface import LoglikelihoodRequest

API_KEY = "test-key-0123"  # the key conftest.py's servers accept

REQUESTS = [
    ("The movie was", " great"),
    ("The movie was ", "great fun"),
    ("Review: a dull film\nSentiment:", " negative"),
    ("Review: a dull film\nSentiment:\n", "positive"),
    ("", "hello world"),
]


def _lm_eval_style(client, model, ids: list[int], ctxlen: int) -> tuple[float, bool]:
    """What lm-eval's local-completions does with a log-likelihood request, verbatim in spirit:
    token ids, max_tokens=1, logprobs=1, echo, temperature 0; drop the generated token."""
    out = client.completions.create(model="tiny", prompt=ids, max_tokens=1, logprobs=1, echo=True, temperature=0,
                                    seed=1234)  # fmt: skip
    choice = out.choices[0]
    values = choice.logprobs.token_logprobs[ctxlen:-1]
    tops = choice.logprobs.top_logprobs[ctxlen:-1]
    greedy = all(value == max(top.values()) for value, top in zip(values, tops, strict=True))
    return sum(values), greedy


@pytest.mark.parametrize("model_fixture", ["tiny_lm", "tiny_lm_bos"])
def test_echo_logprobs_equal_the_local_loglikelihood(model_fixture, request, start) -> None:
    import openai

    from promptlearning.serving import ServedModels

    lm = request.getfixturevalue(model_fixture)
    served = ServedModels(text={"tiny": lm})
    served.loaded.set()
    server = start(served)
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)
    local = lm.loglikelihood(REQUESTS)
    for (context, continuation), expected in zip(REQUESTS, local, strict=True):
        prefix, cont = lm.split_request(LoglikelihoodRequest(context, continuation))
        total, greedy = _lm_eval_style(client, lm, prefix + cont, len(prefix))
        assert total == pytest.approx(expected.logprob, abs=1e-4)
        assert greedy == expected.is_greedy


def test_completions_text_usage_and_token_boundaries(client, tiny_lm) -> None:
    out = client.completions.create(model="tiny", prompt="The movie was", max_tokens=6, temperature=0)
    [expected] = tiny_lm.generate(["The movie was"], GenerationConfig(max_new_tokens=6))
    assert out.choices[0].text == expected.text
    assert out.usage.prompt_tokens == tiny_lm.count_tokens("The movie was")
    assert out.usage.completion_tokens == expected.num_tokens
    # echo with max_tokens=0: the prompt's own tokens and logprobs, nothing generated
    echo = client.completions.create(model="tiny", prompt="The movie was", max_tokens=0, echo=True, logprobs=2)
    logprobs = echo.choices[0].logprobs
    assert echo.choices[0].text == "The movie was"
    assert "".join(logprobs.tokens) == "The movie was"
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(len(top) >= 2 for top in logprobs.top_logprobs[1:])
    assert logprobs.text_offset == [sum(len(t) for t in logprobs.tokens[:i]) for i in range(len(logprobs.tokens))]


def test_several_prompts_n_samples_and_seeds(client) -> None:
    kwargs = {"model": "tiny", "prompt": ["a b", "c d", "e f"], "max_tokens": 5, "temperature": 0.9, "n": 2,
              "seed": 7}  # fmt: skip
    first = client.completions.create(**kwargs)
    again = client.completions.create(**kwargs)
    assert [c.index for c in first.choices] == list(range(6))
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # seeded: reproducible
    ids = client.completions.create(model="tiny", prompt=[[5, 6, 7], [8, 9]], max_tokens=2, temperature=0)
    assert len(ids.choices) == 2


def test_generated_logprobs_and_stop_strings(client) -> None:
    out = client.completions.create(model="tiny", prompt="The movie was", max_tokens=5, temperature=0, logprobs=3)
    logprobs = out.choices[0].logprobs
    assert len(logprobs.tokens) >= 1 and all(v is not None and v <= 0 for v in logprobs.token_logprobs)
    text = out.choices[0].text
    if len(text) > 2:
        stop = text[1:3]
        cut = client.completions.create(model="tiny", prompt="The movie was", max_tokens=5, temperature=0, stop=[stop])
        assert cut.choices[0].text == text[: text.index(stop)]
        assert cut.choices[0].finish_reason == "stop"


def test_streaming_completions_send_the_same_text(client) -> None:
    whole = client.completions.create(model="tiny", prompt="Once upon", max_tokens=12, temperature=0)
    stream = client.completions.create(model="tiny", prompt="Once upon", max_tokens=12, temperature=0, stream=True,
                                       stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason


def test_chat_completions_and_streaming(client, tiny_lm) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hi"}]
    whole = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0)
    prompt = tiny_lm.apply_chat_template(messages)
    [expected] = tiny_lm.generate([prompt], GenerationConfig(max_new_tokens=10))
    assert whole.choices[0].message.content == expected.text
    assert whole.usage.prompt_tokens == tiny_lm.count_tokens(prompt)
    stream = client.chat.completions.create(model="tiny", messages=messages, max_tokens=10, temperature=0, stream=True)
    deltas = [c.choices[0].delta for c in stream]
    assert deltas[0].role == "assistant"
    assert "".join(d.content or "" for d in deltas) == expected.text


def test_raw_stream_ends_with_done(server) -> None:
    body = {"model": "tiny", "prompt": "hi", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.base_url + "/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as response:  # fmt: skip
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["content-type"].startswith("text/event-stream")
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(line[6:])["object"] == "text_completion" for line in lines[:-1])


def test_raw_chat_stream_chunks_have_openais_shape(server) -> None:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True,
            "stream_options": {"include_usage": True}}  # fmt: skip
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as response:  # fmt: skip
        events = [json.loads(line[6:]) for line in response.iter_lines() if line and line != "data: [DONE]"]
    *chunks, last = events
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all("usage" not in c and c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(None not in c["choices"][0]["delta"].values() for c in chunks)  # absent, not null
    assert chunks[-1]["choices"][0]["delta"] == {} and chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    assert last["choices"] == [] and last["usage"]["total_tokens"] == sum(
        last["usage"][k] for k in ("prompt_tokens", "completion_tokens")
    )


def test_every_endpoint_documents_its_response_body(server) -> None:
    schema = httpx.get(server.base_url.removesuffix("/v1") + "/openapi.json",
                       headers={"Authorization": f"Bearer {API_KEY}"}).json()  # fmt: skip
    documented = {}
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            content = operation["responses"]["200"].get("content", {}).get("application/json", {})
            documented[(method, path)] = content.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1]
    assert documented[("post", "/v1/completions")] == "Completion"
    assert documented[("post", "/v1/chat/completions")] == "ChatCompletion"
    assert documented[("post", "/v1/embeddings")] == "EmbeddingList"
    assert documented[("get", "/v1/models")] == "ModelList"
    assert documented[("post", "/v1/classify")] == "Classifications"
    assert documented[("post", "/v1/solve")] == "Solutions"
    assert documented[("post", "/v1/generate")] == "Generations"
    assert documented[("post", "/v1/programs/{name}/predict")] == "ProgramPredictions"
    assert documented[("post", "/tokenize")] == "Tokenized"


def test_models_embeddings_and_tokenizer_endpoints(client, server, served, tiny_lm) -> None:
    import numpy as np

    assert {m.id for m in client.models.list()} == {"tiny", "tiny-encoder"}
    texts = ["a good film", "a bad film"]
    out = client.embeddings.create(model="tiny-encoder", input=texts)  # the client asks for base64
    local = served.embedders["tiny-encoder"].embed(texts)
    np.testing.assert_allclose(np.array([d.embedding for d in out.data]), local, atol=1e-5)
    plain = client.embeddings.create(model="tiny-encoder", input="a good film", encoding_format="float")
    np.testing.assert_allclose(plain.data[0].embedding, local[0], atol=1e-5)

    headers = {"Authorization": f"Bearer {API_KEY}"}
    tokens = httpx.post(server.url + "/tokenize", json={"prompt": "hello world", "add_special_tokens": False},
                        headers=headers).json()  # fmt: skip
    assert tokens["tokens"] == tiny_lm.encode("hello world") and tokens["count"] == len(tokens["tokens"])
    text = httpx.post(server.url + "/detokenize", json={"tokens": tokens["tokens"]}, headers=headers).json()
    assert text == {"prompt": "hello world"}
    info = httpx.get(server.url + "/tokenizer_info", headers=headers).json()
    assert info["eos_token"] == tiny_lm.tokenizer.eos_token and info["model_max_length"] == tiny_lm.max_length


def test_lm_eval_detects_the_remote_tokenizer(server) -> None:
    utils = pytest.importorskip("lm_eval.utils")
    assert utils.check_remote_tokenizer_support(server.base_url + "/completions", auth_token=API_KEY)


def test_concurrent_requests_are_batched_and_equal_sequential_ones(server, client, tiny_lm) -> None:
    prompts = [f"Review: film number {i} was" for i in range(12)]
    sequential = [client.completions.create(model="tiny", prompt=p, max_tokens=0, echo=True, logprobs=1)
                  for p in prompts]  # fmt: skip
    generated = [client.completions.create(model="tiny", prompt=p, max_tokens=4, temperature=0).choices[0].text
                 for p in prompts]  # fmt: skip
    before = _batch_count(server)
    results: dict[int, tuple] = {}

    def send(i: int) -> None:
        echo = client.completions.create(model="tiny", prompt=prompts[i], max_tokens=0, echo=True, logprobs=1)
        text = client.completions.create(model="tiny", prompt=prompts[i], max_tokens=4, temperature=0)
        results[i] = (echo, text.choices[0].text)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, expected in enumerate(sequential):
        echo, text = results[i]
        got, want = echo.choices[0].logprobs.token_logprobs[1:], expected.choices[0].logprobs.token_logprobs[1:]
        assert got == pytest.approx(want, abs=1e-4)
        assert text == generated[i]
    calls, items = _batch_count(server)[0] - before[0], _batch_count(server)[1] - before[1]
    assert items == 2 * len(prompts) and calls < items  # several requests shared a model call


def _batch_count(server) -> tuple[float, float]:
    text = httpx.get(server.url + "/metrics").text
    values = {}
    for line in text.splitlines():
        if line.startswith("promptlearning:batch_size_count") or line.startswith("promptlearning:batch_size_sum"):
            name, value = line.split()
            values[name] = float(value)
    return values["promptlearning:batch_size_count"], values["promptlearning:batch_size_sum"]


def test_metrics_say_whether_the_worker_runs_and_how_much_may_queue(server) -> None:
    """What the alert rules in deploy/prometheus read (model worker down, queue saturated)."""
    values = {}
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(("promptlearning:model_worker_up", "promptlearning:queue_capacity")):
            name, value = line.split()
            values[name] = float(value)
    assert values["promptlearning:model_worker_up"] == 1
    assert values["promptlearning:queue_capacity"] >= 1
