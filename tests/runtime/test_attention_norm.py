"""Attention and row kernels against their NumPy references, on odd shapes."""
from __future__ import annotations

import numba
import numpy as np
import pytest

from edgebert.runtime import reference as ref
from edgebert.runtime.kernels.attention import make_scratch
from edgebert.runtime.kernels.attention import attention as attention_fast
from edgebert.runtime.kernels.norm import add_norm, embed

# float32 kernels vs float64-statistics references: a few float32 ulps of
# unit-scale values; exp is a degree-6 polynomial (relative error < 2e-7).
ATOL = 2e-5


def _attention(qkv, offsets, heads):
    out = np.empty((qkv.shape[0], qkv.shape[1] // 3), np.float32)
    longest = int(np.diff(offsets).max())
    attention_fast(qkv, offsets, heads, out, make_scratch(longest, qkv.shape[1] // 3 // heads))
    return out


@pytest.mark.parametrize("lengths, heads, d", [([1], 1, 4), ([1, 3, 17], 2, 8), ([512], 12, 32),
                                               ([5, 1, 33, 2], 4, 16), ([15, 16, 17, 40], 2, 48),
                                               ([9, 8], 3, 6)])
def test_attention_matches_reference(lengths, heads, d):
    rng = np.random.default_rng(len(lengths) + heads)
    T, H = sum(lengths), heads * d
    qkv = (rng.standard_normal((T, 3 * H)) * 2).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    np.testing.assert_allclose(_attention(qkv, offsets, heads), ref.attention_ref(qkv, offsets, heads),
                               atol=ATOL, rtol=0)


def test_attention_extreme_scores_stay_finite():
    """Scores spanning hundreds (exp underflow region) give a finite softmax."""
    qkv = np.zeros((3, 6), np.float32)
    qkv[:, 0] = [30.0, -30.0, 0.0]  # q
    qkv[:, 2] = [30.0, 0.0, -30.0]  # k
    qkv[:, 4:] = np.arange(6, dtype=np.float32).reshape(3, 2)
    got = _attention(qkv, np.array([0, 3]), 1)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref.attention_ref(qkv, np.array([0, 3]), 1), atol=ATOL)


def test_attention_very_negative_scores_with_padded_keys():
    """L=17 (a padded key block): scores far below zero everywhere still normalise."""
    rng = np.random.default_rng(2)
    qkv = np.zeros((17, 96), np.float32)
    qkv[:, 0] = 40.0
    qkv[:, 32] = -np.linspace(5.0, 40.0, 17)  # every score in [-283, -35]
    qkv[:, 64:] = rng.standard_normal((17, 32))
    got = _attention(qkv, np.array([0, 17]), 1)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref.attention_ref(qkv, np.array([0, 17]), 1), atol=ATOL, rtol=0)


def test_attention_identical_across_threads_and_batches():
    rng = np.random.default_rng(1)
    lengths = [7, 130, 3]
    qkv = rng.standard_normal((sum(lengths), 3 * 64)).astype(np.float32)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    numba.set_num_threads(1)
    one = _attention(qkv, offsets, 4)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    many = _attention(qkv, offsets, 4)
    np.testing.assert_array_equal(one, many)
    alone = _attention(qkv[7:137], np.array([0, 130]), 4)
    np.testing.assert_array_equal(alone, many[7:137])


@pytest.mark.parametrize("T, H", [(1, 1), (3, 17), (64, 384)])
def test_add_norm_matches_reference(T, H):
    rng = np.random.default_rng(T)
    x, r = (rng.standard_normal((2, T, H)) * 3).astype(np.float32)
    g, b = rng.standard_normal((2, H)).astype(np.float32)
    out = np.empty_like(x)
    add_norm(x, r, g, b, 1e-12, out)
    np.testing.assert_allclose(out, ref.add_norm_ref(x, r, g, b, 1e-12), atol=ATOL, rtol=1e-5)


def test_embed_matches_reference():
    rng = np.random.default_rng(3)
    V, P, H, T = 50, 20, 24, 13
    word = rng.integers(-127, 128, (V, H)).astype(np.int8)
    scale = rng.random(V).astype(np.float32) * 0.01
    pos, typ = rng.standard_normal((P, H)).astype(np.float32), rng.standard_normal((2, H)).astype(np.float32)
    g, b = rng.standard_normal((2, H)).astype(np.float32)
    ids, types, positions = rng.integers(0, V, T).astype(np.int32), rng.integers(0, 2, T).astype(np.int32), \
        rng.integers(0, P, T).astype(np.int32)
    out = np.empty((T, H), np.float32)
    embed(ids, types, positions, word, scale, pos, typ, g, b, 1e-12, out)
    np.testing.assert_allclose(out, ref.embed_ref(ids, types, positions, word, scale, pos, typ, g, b, 1e-12),
                               atol=ATOL, rtol=1e-5)


@pytest.mark.parametrize("scale, offset", [(20.0, 0.0), (0.5, 15.0), (1e-3, 0.0)])
def test_add_norm_real_width_large_values(scale, offset):
    """Hidden size 384 with values up to ~20 (and a large mean): float64 statistics keep
    the float32 result on the reference's rounding; in place (out is x) and across threads."""
    rng = np.random.default_rng(7)
    T, H = 130, 384
    x = (rng.standard_normal((T, H)) * scale + offset).astype(np.float32)
    r = (rng.standard_normal((T, H)) * scale).astype(np.float32)
    g, b = (rng.standard_normal((2, H)) * 2).astype(np.float32)
    want = ref.add_norm_ref(x, r, g, b, 1e-12)
    out = np.empty_like(x)
    numba.set_num_threads(1)
    add_norm(x, r, g, b, 1e-12, out)
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_allclose(out, want, atol=ATOL, rtol=1e-5)
    inplace = x.copy()
    add_norm(inplace, r, g, b, 1e-12, inplace)
    np.testing.assert_array_equal(inplace, out)
    assert (out != want).mean() < 1e-3  # float64 statistics: nearly always the same float32


def test_layer_norm_head_matches_reference():
    from edgebert.runtime.kernels.heads import layer_norm
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((9, 384)) * 5 + 3).astype(np.float32)
    g, b = rng.standard_normal((2, 384)).astype(np.float32)
    out = np.empty_like(x)
    layer_norm(x, g, b, 1e-12, out)
    np.testing.assert_allclose(out, ref.layernorm_ref(x, g, b, 1e-12), atol=ATOL, rtol=1e-5)
