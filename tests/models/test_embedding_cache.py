"""Pool embeddings on disk: reused across loads of the same encoder, keyed by weights and texts,
never half-used when damaged; kNN selection goes through it."""

from __future__ import annotations

import os

import numpy as np
import pytest

from promptlearning.methods import PromptClassifier
from promptlearning.models import load_model
from promptlearning.models.embedding_cache import cache_path, embed_cached
from promptlearning.prompts import PromptTemplate, Verbalizer

TEXTS = [f"sentence number {i} about {'cats' if i % 2 else 'the stock market'}" for i in range(700)]


@pytest.fixture
def encoder(tiny_encoder_dir):
    return load_model(tiny_encoder_dir, backend="sentence-transformers", device="cpu")


def test_embeddings_are_stored_and_read_back_by_a_new_load(encoder, tiny_encoder_dir, isolated_home, monkeypatch):
    first = embed_cached(encoder, TEXTS)
    np.testing.assert_allclose(first, encoder.embed(TEXTS), atol=1e-5)  # chunked = one call
    path = cache_path(encoder, TEXTS)
    assert path is not None and path.is_file() and path.parent == isolated_home / "embeddings"

    again = load_model(tiny_encoder_dir, backend="sentence-transformers", device="cpu")
    assert cache_path(again, TEXTS) == path

    def no_embedding(texts, **_):
        raise AssertionError("the cached pool was embedded again")

    monkeypatch.setattr(again, "embed", no_embedding)
    np.testing.assert_array_equal(embed_cached(again, TEXTS), first)


def test_the_key_depends_on_texts_order_and_weights(encoder, tiny_encoder_dir, isolated_home):
    path = cache_path(encoder, TEXTS)
    assert cache_path(encoder, TEXTS[::-1]) != path
    assert cache_path(encoder, ["ab", "c"]) != cache_path(encoder, ["a", "bc"])
    weights = tiny_encoder_dir / "model.safetensors"
    stat = weights.stat()
    try:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # retrained in place
        assert cache_path(encoder, TEXTS) != path
    finally:
        os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_damaged_cache_file_is_embedded_again(encoder, isolated_home):
    texts = TEXTS[:20]
    expected = embed_cached(encoder, texts)
    path = cache_path(encoder, texts)
    path.write_bytes(path.read_bytes()[:100])  # cut short, as by a full disk
    np.testing.assert_array_equal(embed_cached(encoder, texts), expected)
    np.testing.assert_array_equal(np.load(path), expected)  # and rewritten whole


def test_encoders_built_in_memory_are_not_cached(tiny_bert_dir, isolated_home):
    encoder = load_model(tiny_bert_dir)  # a plain transformers encoder: no files to identify it by
    assert cache_path(encoder, TEXTS[:3]) is None
    assert embed_cached(encoder, TEXTS[:3]).shape[0] == 3
    assert not (isolated_home / "embeddings").exists()


def test_knn_selection_uses_the_cache(tiny_lm, encoder, isolated_home):
    pool = [{"text": t, "label": "b" if i % 2 else "a"} for i, t in enumerate(TEXTS[:30])]
    template = PromptTemplate("{{ text }} ->")
    clf = PromptClassifier(tiny_lm, template, Verbalizer({"a": [" a"], "b": [" b"]}), method="icl", shots=2,
                           selection="knn", embedder=encoder)  # fmt: skip
    first = [p.demonstrations for p in clf.fit(pool).predict(pool[:4])]
    assert cache_path(encoder, [template.render_input(ex) for ex in pool]).is_file()
    assert [p.demonstrations for p in clf.fit(pool).predict(pool[:4])] == first
    assert [d[-1] for d in first] == [0, 1, 2, 3]  # an example in the pool is its own nearest
