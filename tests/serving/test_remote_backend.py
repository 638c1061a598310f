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
