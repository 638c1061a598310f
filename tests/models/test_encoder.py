"""Encoder models: embeddings by masked mean pooling (BERT-style tiny model)."""

from __future__ import annotations

import numpy as np
import pytest

from promptlearning.errors import UnsupportedOperationError
from promptlearning.models import load_model
from promptlearning.models.hf import HFEncoderModel


@pytest.fixture(scope="module")
def encoder(tiny_bert_dir):
    return load_model(tiny_bert_dir)


def test_a_bert_directory_loads_as_an_encoder(encoder):
    assert isinstance(encoder, HFEncoderModel)


def test_embeddings_do_not_depend_on_batch_padding(encoder):
    texts = ["the cat", "the capital of france is paris and the capital of england is london", "great"]
    together = encoder.embed(texts, batch_size=3)
    alone = np.stack([encoder.embed([t])[0] for t in texts])
    assert together.shape == (3, 32)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert not np.allclose(together[0], together[1])


def test_encoders_refuse_generation_and_scoring(encoder):
    with pytest.raises(UnsupportedOperationError, match="encoder"):
        encoder.generate(["x"])
    with pytest.raises(UnsupportedOperationError, match="encoder"):
        encoder.loglikelihood([("a", " b")])
