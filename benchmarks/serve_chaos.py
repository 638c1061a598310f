"""Chaos on loopback: minutes of mixed, partly hostile traffic against ``promptlearning serve`` with
the real SmolLM2-135M-Instruct (and minilm-l6 for embeddings).

Workers pick, at random (seeded), among: completions and chat (streamed and not), classification,
tokenize, embeddings and probes, each answer checked against the answer the same request got
alone before the storm; malformed bodies (broken JSON, wrong types, lone surrogates, unknown models,
limits exceeded), which must get a 4xx; clients that disconnect mid-stream (10 %) or give up before
the answer; and every 20 s a burst of 150 requests at once, past the server's capacity (200 or 429).
At the end the server must still answer a normal request correctly, ``/ready`` must be 200 (its
model worker alive), and its resident memory is compared with what it was after the first 1,000
requests.

    python benchmarks/serve_chaos.py [--requests 10000] [--max-seconds 900] [--workers 16]

Needs ``psutil`` (the ``[bench]`` extra). Ends with one line: requests sent, answered correctly, 4xx,
5xx (target 0), hangs (target 0), model thread alive, RSS growth.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import psutil
from common import machine
from load import promptlearning_server

MODEL = "smollm2-135m-instruct"
EMBEDDER = "minilm-l6"
HANG_SECONDS = 120.0  # an answer slower than this is a hang
PROMPTS = ["The capital of France is", "Once upon a time", "def add(a, b):", "The best way to learn is",
           "Water boils at", "My favourite colour is", "1, 2, 3, 4,", "The movie was"]  # fmt: skip
QUESTIONS = ["Say hello.", "Name a fruit.", "What is 2 + 2?", "Give me a colour."]
REVIEWS = ["a gorgeous, witty film", "dull and far too long", "i loved every minute", "a waste of two hours",
           "not bad at all", "the acting was wooden"]  # fmt: skip
TEMPLATE = "Review: {{ text }}\nSentiment:"
WORDS = {"negative": " negative", "positive": " positive"}
MALFORMED = [  # (path, raw body): every one must be a 4xx
    ("/v1/completions", b'{"model": "smollm2-135m-instruct", "prompt": '),
    ("/v1/completions", b"[1, 2, 3]"),
    ("/v1/completions", json.dumps({"model": MODEL, "prompt": "a\ud800b"}).encode()),
    ("/v1/completions", json.dumps({"model": MODEL, "prompt": "x", "max_tokens": True}).encode()),
    ("/v1/completions", json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 100000}).encode()),
    ("/v1/completions", json.dumps({"model": "no-such-model", "prompt": "x"}).encode()),
    ("/v1/completions", json.dumps({"model": MODEL, "prompt": "x", "stop": [""]}).encode()),
    ("/v1/completions", json.dumps({"model": MODEL, "prompt": [[1, 10**9]]}).encode()),
    ("/v1/chat/completions", json.dumps({"model": MODEL, "messages": []}).encode()),
    ("/v1/chat/completions", json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}).encode()),
    ("/v1/classify", json.dumps({"template": "{% include 'x' %}", "verbalizer": WORDS,
                                 "inputs": [{"text": "x"}]}).encode()),
    ("/v1/classify", json.dumps({"template": {"bogus": 1}, "verbalizer": WORDS, "inputs": [{"text": "x"}]}).encode()),
    ("/v1/classify", json.dumps({"template": TEMPLATE, "verbalizer": {"a": None}, "inputs": [{"text": "x"}]}).encode()),
    ("/v1/embeddings", json.dumps({"model": EMBEDDER, "input": "x", "dimensions": 7}).encode()),
    ("/v1/solve", json.dumps({"model": MODEL, "questions": []}).encode()),
    ("/tokenize", json.dumps({"model": MODEL}).encode()),
    ("/v1/completions", b'{"model": "smollm2-135m-instruct", "prompt": "' + b"x" * 1_200_000 + b'"}'),
]  # fmt: skip
SCENARIOS = {  # name -> weight
    "complete": 20, "chat": 5, "stream_chat": 5, "stream_disconnect": 10, "give_up": 5, "classify": 10,
    "tokenize": 8, "embed": 5, "probe": 17, "malformed": 15,
}  # fmt: skip


class Tally:
    """Outcome counts: correct, wrong, 4xx, 5xx, hang, abandoned (on purpose), transport errors."""

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.statuses: Counter[int] = Counter()
        self.wrong_examples: list[str] = []

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())

    def status(self, code: int) -> str | None:
        self.statuses[code] += 1
        if code >= 500:
            self.outcomes["5xx"] += 1
            return "5xx"
        if code >= 400:
            self.outcomes["4xx"] += 1
            return "4xx"
        return None

    def wrong(self, what: str) -> None:
        self.outcomes["wrong"] += 1
        if len(self.wrong_examples) < 5:
            self.wrong_examples.append(what[:200])


async def reference_answers(http: httpx.AsyncClient) -> dict:
    """Each checked request's answer when it is the only one (the server idle)."""
    ref: dict = {"complete": {}, "chat": {}, "classify": {}, "tokenize": {}, "embed": {}}
    for prompt in PROMPTS:
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0}
        ref["complete"][prompt] = (await http.post("/v1/completions", json=body)).json()["choices"][0]["text"]
        tokens = await http.post("/tokenize", json={"model": MODEL, "prompt": prompt})
        ref["tokenize"][prompt] = tokens.json()["tokens"]
    for question in QUESTIONS:
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 6, "temperature": 0}
        reply = await http.post("/v1/chat/completions", json=body)
        ref["chat"][question] = reply.json()["choices"][0]["message"]["content"]
    for review in REVIEWS:
        body = {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": review}]}
        ref["classify"][review] = (await http.post("/v1/classify", json=body)).json()["predictions"][0]["label"]
        vector = (await http.post("/v1/embeddings", json={"model": EMBEDDER, "input": review})).json()
        ref["embed"][review] = np.asarray(vector["data"][0]["embedding"])
    return ref


async def one_request(http: httpx.AsyncClient, rng: random.Random, ref: dict, tally: Tally, name: str) -> None:
    try:
        await asyncio.wait_for(_scenario(http, rng, ref, tally, name), HANG_SECONDS)
    except TimeoutError:
        tally.outcomes["hang"] += 1
    except httpx.HTTPError as exc:
        tally.outcomes[f"transport:{type(exc).__name__}"] += 1


async def _scenario(http: httpx.AsyncClient, rng: random.Random, ref: dict, tally: Tally, name: str) -> None:
    if name == "complete":
        prompt = rng.choice(PROMPTS)
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0}
        await _check(http, tally, "/v1/completions", body, lambda r: r["choices"][0]["text"] == ref["complete"][prompt])
    elif name == "chat":
        question = rng.choice(QUESTIONS)
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 6, "temperature": 0}
        await _check(http, tally, "/v1/chat/completions", body,
                     lambda r: r["choices"][0]["message"]["content"] == ref["chat"][question])  # fmt: skip
    elif name == "stream_chat":
        question = rng.choice(QUESTIONS)
        body = {"model": MODEL, "messages": [{"role": "user", "content": question}], "max_tokens": 6,
                "temperature": 0, "stream": True}  # fmt: skip
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if tally.status(response.status_code):
                return
            text, done = "", False
            async for line in response.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    chunk = json.loads(line[6:])
                    if "error" in chunk:
                        tally.wrong(f"error event {chunk}")
                        return
                    text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
            ok = done and text == ref["chat"][question]
            tally.outcomes["correct"] += ok
            if not ok:
                tally.wrong(f"stream {question!r}: {text!r} vs {ref['chat'][question]!r}")
    elif name == "stream_disconnect":  # reads two chunks of a long answer, then goes away
        body = {"model": MODEL, "messages": [{"role": "user", "content": rng.choice(QUESTIONS)}], "max_tokens": 64,
                "temperature": 0.7, "stream": True}  # fmt: skip
        async with http.stream("POST", "/v1/chat/completions", json=body) as response:
            if tally.status(response.status_code):
                return
            lines = response.aiter_lines()
            for _ in range(3):
                await lines.__anext__()
        tally.outcomes["abandoned"] += 1
    elif name == "give_up":  # a client with a short timeout
        body = {"model": MODEL, "prompt": rng.choice(PROMPTS), "max_tokens": 48, "temperature": 0.7}
        try:
            response = await http.post("/v1/completions", json=body, timeout=0.3)
        except httpx.TimeoutException:
            tally.outcomes["abandoned"] += 1
            return
        if not tally.status(response.status_code):
            tally.outcomes["correct"] += 1  # answered within 0.3 s: fine too
    elif name == "classify":
        review = rng.choice(REVIEWS)
        body = {"template": TEMPLATE, "verbalizer": WORDS, "inputs": [{"text": review}]}
        await _check(
            http, tally, "/v1/classify", body, lambda r: r["predictions"][0]["label"] == ref["classify"][review]
        )
    elif name == "tokenize":
        prompt = rng.choice(PROMPTS)
        await _check(http, tally, "/tokenize", {"model": MODEL, "prompt": prompt},
                     lambda r: r["tokens"] == ref["tokenize"][prompt])  # fmt: skip
    elif name == "embed":
        review = rng.choice(REVIEWS)

        def close(r: dict) -> bool:
            vector = np.asarray(r["data"][0]["embedding"])
            want = ref["embed"][review]
            return (
                vector.shape == want.shape
                and float(vector @ want / np.linalg.norm(vector) / np.linalg.norm(want)) > 0.999
            )

        await _check(http, tally, "/v1/embeddings", {"model": EMBEDDER, "input": review}, close)
    elif name == "probe":
        path = rng.choice(["/health", "/ready", "/v1/models"])
        response = await http.get(path)
        if not tally.status(response.status_code):
            tally.outcomes["correct"] += 1
    elif name == "malformed":
        path, raw = rng.choice(MALFORMED)
        response = await http.post(path, content=raw, headers={"Content-Type": "application/json"})
        kind = tally.status(response.status_code)
        if kind is None:
            tally.wrong(f"malformed body to {path} answered {response.status_code}")
    else:
        raise ValueError(name)


async def _check(http: httpx.AsyncClient, tally: Tally, path: str, body: dict, right) -> None:
    response = await http.post(path, json=body)
    if tally.status(response.status_code):
        return
    answer = response.json()
    if right(answer):
        tally.outcomes["correct"] += 1
    else:
        tally.wrong(f"{path} {json.dumps(body)[:80]} -> {json.dumps(answer)[:120]}")


async def burst(http: httpx.AsyncClient, ref: dict, tally: Tally, size: int = 150) -> None:
    """``size`` completions at once: each answered (correctly) or refused with 429."""

    async def one(i: int) -> None:
        prompt = PROMPTS[i % len(PROMPTS)]
        body = {"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0}
        try:
            await asyncio.wait_for(
                _check(
                    http, tally, "/v1/completions", body, lambda r: r["choices"][0]["text"] == ref["complete"][prompt]
                ),
                HANG_SECONDS,
            )
        except TimeoutError:
            tally.outcomes["hang"] += 1
        except httpx.HTTPError as exc:
            tally.outcomes[f"transport:{type(exc).__name__}"] += 1

    await asyncio.gather(*(one(i) for i in range(size)))


async def storm(url: str, pid: int, requests: int, max_seconds: float, workers: int, seed: int) -> dict:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=HANG_SECONDS + 10, limits=limits) as http:
        ref = await reference_answers(http)
        tally = Tally()
        process = psutil.Process(pid)
        rss: dict[str, int] = {}
        names, weights = zip(*SCENARIOS.items(), strict=True)
        start = time.monotonic()
        stop = asyncio.Event()

        async def worker(index: int) -> None:
            rng = random.Random(seed * 1000 + index)
            while not stop.is_set():
                await one_request(http, rng, ref, tally, rng.choices(names, weights)[0])
                if "first" not in rss and tally.sent >= 1000:
                    rss["first"] = process.memory_info().rss
                if tally.sent >= requests or time.monotonic() - start > max_seconds:
                    stop.set()

        async def bursts() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 20.0)
                except TimeoutError:
                    await burst(http, ref, tally)

        async def report() -> None:
            while not stop.is_set():
                try:
                    await asyncio.wait_for(stop.wait(), 30.0)
                except TimeoutError:
                    print(f"  {time.monotonic() - start:.0f} s: {tally.sent} sent, {dict(tally.outcomes)}", flush=True)

        await asyncio.gather(*(worker(i) for i in range(workers)), bursts(), report())
        seconds = time.monotonic() - start
        await asyncio.sleep(1.0)  # abandoned work drains
        rss["end"] = process.memory_info().rss
        ready = (await http.get("/ready")).status_code == 200
        prompt = PROMPTS[0]
        final = await http.post("/v1/completions", json={"model": MODEL, "prompt": prompt, "max_tokens": 3,
                                                          "temperature": 0})  # fmt: skip
        final_ok = final.status_code == 200 and final.json()["choices"][0]["text"] == ref["complete"][prompt]
    return {"tally": tally, "seconds": seconds, "rss": rss, "ready": ready, "final_ok": final_ok}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="requests to send (default 10,000)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop sending after this (default 900)")
    parser.add_argument("--workers", type=int, default=16, help="closed-loop clients besides the bursts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        flags = ["--model", MODEL, "--embedding-model", EMBEDDER, "--max-queue", "32", "--max-batch-size", "16",
                 "--max-tokens-limit", "256", "--shutdown-grace-seconds", "10"]  # fmt: skip
        with promptlearning_server(log, *flags) as server:
            out = asyncio.run(storm(server.url, server.process.pid, args.requests, args.max_seconds, args.workers,
                                    args.seed))  # fmt: skip
            alive = server.process.poll() is None
        tracebacks = log.read_text().count("Traceback")
    tally: Tally = out["tally"]
    growth = 100.0 * (out["rss"]["end"] / out["rss"]["first"] - 1) if "first" in out["rss"] else float("nan")
    print(f"machine: {machine()}")
    statuses = dict(sorted(tally.statuses.items()))
    print(f"{args.workers} clients + bursts of 150 every 20 s for {out['seconds']:.0f} s; statuses {statuses}")
    print(f"outcomes: {dict(tally.outcomes)}; tracebacks in the server log: {tracebacks}")
    for example in tally.wrong_examples:
        print(f"  wrong: {example}")
    hangs = tally.outcomes["hang"]
    thread = "yes" if out["ready"] and out["final_ok"] and alive else "NO"
    print(f"serve_chaos: {tally.sent} requests sent, {tally.outcomes['correct']} answered correctly, "
          f"{tally.outcomes['4xx']} 4xx, {tally.outcomes['5xx']} 5xx, {hangs} hangs, "
          f"{tally.outcomes['abandoned']} abandoned by their clients, {tally.outcomes['wrong']} wrong, "
          f"model thread alive: {thread}, RSS growth {growth:+.1f} % (after 1,000 requests -> end)")  # fmt: skip


if __name__ == "__main__":
    main()
