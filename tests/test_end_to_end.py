"""Convert a tiny random BertModel, run it, compare with transformers FP32."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.converters import convert

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# float32 weights through our kernels vs PyTorch: the same math, only the
# order of float32 additions differs (matmul blocking, LayerNorm in float64).
FP32_ATOL = 1e-4
# int8 weights and per-token int8 activations vs FP32: each quantized value is
# off by at most half a step (amax/254); through 2 layers of a random model
# this stays within a few hundredths on LayerNorm-scaled (unit variance) outputs.
INT8_ATOL = 0.08
INT8_MIN_TOKEN_COSINE = 0.995
# Our Numba kernels vs our NumPy references on the same int8 file: the integer
# GEMM is exact in both; float32 rounding in attention/LayerNorm/GELU may flip
# a rare activation rounding to the neighbouring int8 step downstream.
KERNEL_ATOL = 2e-3

TEXTS = ["Hello world!", "A considerably longer sentence, with punctuation; and more words to pad the others.",
         "x", "Numbers 12345 and ümlauts too."]


def _hf_batch(tiny_dir, texts):
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir)
    batch = tok(texts, padding=True, return_tensors="pt")
    model = transformers.AutoModel.from_pretrained(tiny_dir).eval()
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.numpy()
    return {k: v.numpy() for k, v in batch.items()}, hidden


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory, tiny_dir):
    out = tmp_path_factory.mktemp("e2e") / "tiny.fp32.edgebert"
    convert(tiny_dir, out, dtype="float32")
    return out


@pytest.fixture(scope="module")
def hf(tiny_dir):
    return _hf_batch(tiny_dir, TEXTS)


def _masked(x, mask):
    return x[mask.astype(bool)]


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_fp32_file_matches_transformers(tiny_fp32, hf, backend):
    batch, expected = hf
    got = edgebert.load(tiny_fp32, backend=backend).run(batch["input_ids"], batch["attention_mask"],
                                                        batch["token_type_ids"])
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(_masked(got, batch["attention_mask"]), _masked(expected, batch["attention_mask"]),
                               atol=FP32_ATOL, rtol=0)
    assert not got[~batch["attention_mask"].astype(bool)].any(), "padded rows must be zero"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_int8_file_close_to_transformers(tiny_int8, hf, backend):
    batch, expected = hf
    got = edgebert.load(tiny_int8, backend=backend).run(batch["input_ids"], batch["attention_mask"],
                                                        batch["token_type_ids"])
    a, b = _masked(got, batch["attention_mask"]), _masked(expected, batch["attention_mask"])
    assert np.abs(a - b).max() < INT8_ATOL
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > INT8_MIN_TOKEN_COSINE


def test_numba_kernels_match_numpy_reference(tiny_int8, hf):
    batch, _ = hf
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    fast = edgebert.load(tiny_int8, backend="numba").run(*args)
    slow = edgebert.load(tiny_int8, backend="numpy").run(*args)
    np.testing.assert_allclose(fast, slow, atol=KERNEL_ATOL, rtol=0)


def test_padding_does_not_change_a_sequence(tiny_int8, hf):
    """Each sequence alone (no padding) gives bit-identical rows to the padded batch."""
    batch, _ = hf
    model = edgebert.load(tiny_int8)
    together = model.run(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    for b in range(len(TEXTS)):
        n = int(batch["attention_mask"][b].sum())
        alone = model.run(batch["input_ids"][b:b + 1, :n], batch["attention_mask"][b:b + 1, :n],
                          batch["token_type_ids"][b:b + 1, :n])
        np.testing.assert_array_equal(alone[0], together[b, :n])


def test_left_padding_matches_transformers(tiny_fp32, tiny_dir):
    """Masks are honoured wherever the padding is, with transformers' column positions."""
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir, padding_side="left")
    batch = tok(TEXTS[:2], padding=True, return_tensors="pt")
    model = transformers.AutoModel.from_pretrained(tiny_dir).eval()
    with torch.no_grad():
        expected = model(**batch).last_hidden_state.numpy()
    b = {k: v.numpy() for k, v in batch.items()}
    got = edgebert.load(tiny_fp32).run(b["input_ids"], b["attention_mask"], b["token_type_ids"])
    np.testing.assert_allclose(_masked(got, b["attention_mask"]), _masked(expected, b["attention_mask"]),
                               atol=FP32_ATOL, rtol=0)


def test_embed_mean_pools_like_sentence_transformers(tiny_int8, tiny_fp32, tiny_dir):
    from conftest import hf_mean_pooled

    expected = hf_mean_pooled(tiny_dir, TEXTS, max_length=128, normalize=False)
    fp32 = edgebert.load(tiny_fp32).embed(TEXTS)
    np.testing.assert_allclose(fp32, expected, atol=FP32_ATOL, rtol=0)
    int8 = edgebert.load(tiny_int8).embed(TEXTS, batch_size=3)
    cos = (int8 * expected).sum(1) / np.linalg.norm(int8, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() > INT8_MIN_TOKEN_COSINE


def test_every_kernel_path_gives_the_same_bits(tiny_int8, hf, monkeypatch):
    """The GEMM paths share one quantization and one dequantization order: a whole model
    gives bit-identical outputs on each path this CPU runs (AMX with its fused feed-forward
    block, AVX-512 VNNI, AVX-VNNI, AVX2, portable)."""
    from edgebert.runtime.kernels import cpu

    batch, _ = hf
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    results = {}
    for path in cpu.available_paths():
        monkeypatch.setenv(cpu.ENV_VAR, path)
        model = edgebert.load(tiny_int8)
        assert {p.path for p in model.executor.packed.values()} == {path}
        results[path] = model.run(*args)
    best, *others = results
    for path in others:
        np.testing.assert_array_equal(results[path], results[best], err_msg=f"{path} vs {best}")
