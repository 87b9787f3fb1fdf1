"""The promise: bit-identical outputs whatever the thread count, batch size and batch neighbours."""
from __future__ import annotations

import numba
import numpy as np
import pytest

import edgebert

TEXTS = ["Short.", "A somewhat longer sentence about determinism in numerical code.", "x " * 60,
         "Numbers 3.14159 and symbols #@!", "The same text twice.", "The same text twice."]


@pytest.fixture(scope="module")
def models(tiny_int8):
    return {n: edgebert.load(tiny_int8, threads=n) for n in sorted({1, numba.config.NUMBA_NUM_THREADS})}


def test_same_bits_whatever_the_thread_count(models):
    results = [m.embed(TEXTS) for m in models.values()]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@pytest.mark.parametrize("batch_size", [1, 2, 5, 64])
def test_same_bits_whatever_the_batch_size(models, batch_size):
    model = next(iter(models.values()))
    np.testing.assert_array_equal(model.embed(TEXTS, batch_size=batch_size), model.embed(TEXTS, batch_size=3))


def test_same_bits_whatever_the_neighbours(models):
    model = next(iter(models.values()))
    together = model.embed(TEXTS)
    for i, text in enumerate(TEXTS):
        np.testing.assert_array_equal(model.embed([text])[0], together[i])
    np.testing.assert_array_equal(together[4], together[5])


def test_run_same_bits_with_padding_and_threads(models, tiny_dir):
    transformers = pytest.importorskip("transformers")
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    batch = tok(TEXTS, padding=True, return_tensors="np")
    outs = [m.run(batch["input_ids"], batch["attention_mask"]) for m in models.values()]
    for other in outs[1:]:
        np.testing.assert_array_equal(outs[0], other)
