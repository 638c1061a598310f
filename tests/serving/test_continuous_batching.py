"""Continuous batching: generation requests that arrive while a generation call decodes join it,
are answered as soon as their own tokens are done, and get what they would have got alone."""

from __future__ import annotations

import threading
import time

import pytest

from promptlearning.models import GenerationConfig
from promptlearning.models.interface import Joining
from promptlearning.serving.batching import Batcher

LONG = GenerationConfig(max_new_tokens=60)
PROMPTS = ["the cat sat on", "a dull , tedious", "i loved this film", "the capital of france is"]


def _ids(tiny_lm, text: str) -> list[int]:
    return tiny_lm.encode_prompt(text)


def test_prompts_that_join_a_running_call_get_what_they_get_alone(tiny_lm) -> None:
    alone = {p: tiny_lm.generate_token_ids([_ids(tiny_lm, p)], LONG)[0][0] for p in PROMPTS}
    arrivals = [[_ids(tiny_lm, p)] for p in PROMPTS[1:]] + [[[10**9]]]  # the last is refused by its check
    delivered: dict[int, object] = {}
    steps = {"taken": 0}

    def take(room: int) -> list[list[int]]:
        steps["taken"] += 1
        return arrivals.pop(0) if arrivals and steps["taken"] % 3 == 0 else []  # join every third step

    results = tiny_lm.generate_token_ids([_ids(tiny_lm, PROMPTS[0])], LONG,
                                         joining=Joining(take=take, done=delivered.__setitem__))  # fmt: skip
    assert results[0][0].token_ids == alone[PROMPTS[0]].token_ids
    assert sorted(delivered) == [1, 2, 3, 4]
    for index, prompt in enumerate(PROMPTS[1:], start=1):
        assert delivered[index][0].token_ids == alone[prompt].token_ids, prompt
    assert isinstance(delivered[4], Exception) and "token ids must be in" in str(delivered[4])


def _generate_job(tiny_lm, config: GenerationConfig):
    def run(items: list[list[int]], admission=None) -> list:
        joining = None
        if admission is not None:
            joining = Joining(take=admission.take, done=admission.done)
        return tiny_lm.generate_token_ids(items, config, joining=joining)

    return run


def test_a_request_arriving_mid_call_joins_it(tiny_lm) -> None:
    batcher = Batcher(max_batch_size=8, wait_seconds=0.0)
    key = ("generate", "long")
    try:
        first_prompt, second_prompt = _ids(tiny_lm, PROMPTS[0]), _ids(tiny_lm, PROMPTS[1])
        first = batcher.submit(key, [first_prompt], _generate_job(tiny_lm, LONG), joinable=True)
        while batcher.running == 0:  # the long call has started
            time.sleep(0.001)
        second = batcher.submit(key, [second_prompt], _generate_job(tiny_lm, LONG), joinable=True)
        got_first, got_second = first.result(timeout=60), second.result(timeout=60)
    finally:
        batcher.stop(timeout=10)
    assert batcher.joined == 1  # it ran inside the first call, not after it
    assert got_second[0][0].token_ids == tiny_lm.generate_token_ids([second_prompt], LONG)[0][0].token_ids
    assert got_first[0][0].token_ids == tiny_lm.generate_token_ids([first_prompt], LONG)[0][0].token_ids


def test_scoring_waits_for_no_generation_stream(tiny_lm) -> None:
    """While a scoring job waits, a running generation call admits nobody: the scoring runs next."""
    batcher = Batcher(max_batch_size=8, wait_seconds=0.0)
    key = ("generate", "long")
    order: list[str] = []
    lock = threading.Lock()
    try:
        jobs = [batcher.submit(key, [_ids(tiny_lm, PROMPTS[0])], _generate_job(tiny_lm, LONG), joinable=True)]
        while batcher.running == 0:
            time.sleep(0.001)
        score = batcher.submit(("score",), [("the cat", " sat")], lambda items: tiny_lm.loglikelihood(items))
        later = batcher.submit(key, [_ids(tiny_lm, PROMPTS[2])], _generate_job(tiny_lm, LONG), joinable=True)
        for name, future in (("generation", jobs[0]), ("score", score), ("later generation", later)):
            future.add_done_callback(lambda _, name=name: (lock.acquire(), order.append(name), lock.release()))
        for future in (jobs[0], score, later):
            future.result(timeout=60)
    finally:
        batcher.stop(timeout=10)
    assert order.index("score") < order.index("later generation")


@pytest.mark.parametrize("streamed", [False, True])
def test_concurrent_server_requests_share_one_decoding_call(client, server, streamed: bool) -> None:
    """Through the real server and the official client: requests sent one after another, while the
    first decodes, come back with the text each gets alone."""
    alone = [client.completions.create(model="tiny", prompt=p, max_tokens=40, temperature=0).choices[0].text
             for p in PROMPTS]  # fmt: skip
    answers: dict[int, str] = {}

    def send(i: int) -> None:
        if streamed:
            chunks = client.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=40, temperature=0,
                                               stream=True)  # fmt: skip
            answers[i] = "".join(c.choices[0].text for c in chunks)
        else:
            answers[i] = client.completions.create(model="tiny", prompt=PROMPTS[i], max_tokens=40,
                                                   temperature=0).choices[0].text  # fmt: skip

    joined_before = _joined(server)
    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(PROMPTS))]
    for thread in threads:
        thread.start()
        time.sleep(0.02)  # arrivals spread over the first call's decoding
    for thread in threads:
        thread.join(timeout=60)
    assert [answers[i] for i in range(len(PROMPTS))] == alone
    assert _joined(server) > joined_before


def _joined(server) -> float:
    import httpx

    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("promptlearning:joined_requests"):
            return float(line.split()[1])
    raise AssertionError("no promptlearning:joined_requests in /metrics")
