"""ModernBERT's ops: rotary positions, sliding-window attention, the pre-norm residual add and mean
pooling. Each Numba kernel against its NumPy reference; the references against transformers' own
functions (rotary, the window mask) where transformers has one."""
from __future__ import annotations

import numpy as np
import pytest

from edgebert.runtime import reference as ref
from edgebert.runtime.kernels.attention_window import attention_window, make_scratch
from edgebert.runtime.kernels.residual import add, mean_pool
from edgebert.runtime.kernels.rotary import inverse_frequencies, rotary

# Kernels and references both compute in float64 and round once to float32; only the summation
# order differs: a few float32 ulps of values of order 1.
KERNEL_ATOL = 1e-5
# transformers computes rotary angles, cos and sin in float32 (a position-100 angle is off by
# ~1e-5 rad); the reference in float64.
TORCH_ATOL = 1e-4

OFFSETS = np.array([0, 5, 30, 47], dtype=np.int64)  # one sequence shorter than the window


def _qkv(rows: int, hidden: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 3 * hidden)).astype(np.float32)


def _positions(offsets: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(e - s) for s, e in zip(offsets[:-1], offsets[1:])]).astype(np.int32)


@pytest.mark.parametrize("heads, hidden, theta", [(2, 32, 10000.0), (4, 64, 160000.0), (3, 18, 10.0)])
def test_rotary_kernel_matches_reference(heads, hidden, theta):
    qkv, pos = _qkv(47, hidden), _positions(OFFSETS)
    out = np.empty_like(qkv)
    rotary(qkv, pos, heads, inverse_frequencies(hidden // heads, theta), out)
    want = ref.rotary_ref(qkv, pos, heads, theta)
    np.testing.assert_allclose(out, want, atol=KERNEL_ATOL)
    np.testing.assert_array_equal(out[:, 2 * hidden:], qkv[:, 2 * hidden:])  # v untouched
    assert not np.allclose(want[:, :hidden], qkv[:, :hidden])  # it did rotate


def test_rotary_reference_matches_transformers():
    torch = pytest.importorskip("torch")
    from transformers import ModernBertConfig
    from transformers.models.modernbert.modeling_modernbert import ModernBertRotaryEmbedding, apply_rotary_pos_emb

    heads, hidden, theta, T = 4, 64, 160000.0, 100
    cfg = ModernBertConfig(hidden_size=hidden, num_attention_heads=heads, max_position_embeddings=512)
    cfg.rope_theta = theta  # what ModernBertAttention sets on its copy of the config
    qkv, pos = _qkv(T, hidden), np.arange(T)
    x = torch.from_numpy(qkv).view(1, T, 3, heads, hidden // heads).transpose(3, 1)  # (1, nh, 3, T, d)
    q, k, v = x.unbind(dim=2)
    cos, sin = ModernBertRotaryEmbedding(cfg)(x, torch.from_numpy(pos)[None])
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    want = torch.stack([q, k, v], dim=2).transpose(3, 1).reshape(T, 3 * hidden).numpy()
    np.testing.assert_allclose(ref.rotary_ref(qkv, pos, heads, theta), want, atol=TORCH_ATOL)


@pytest.mark.parametrize("heads, hidden, window", [(2, 32, 4), (4, 64, 8), (3, 18, 0)])
def test_window_kernel_matches_reference(heads, hidden, window):
    qkv = _qkv(47, hidden, seed=1)
    out = np.full((47, hidden), np.nan, dtype=np.float32)
    attention_window(qkv, OFFSETS, heads, window, out, make_scratch(window, hidden // heads))
    want = ref.attention_ref(qkv, OFFSETS, heads, window)
    np.testing.assert_allclose(out, want, atol=KERNEL_ATOL)
    if window == 0:  # a query sees only itself: its own value row
        np.testing.assert_allclose(want, qkv[:, 2 * hidden:], atol=KERNEL_ATOL)
    else:  # the window matters for the 25-token sequence, not for the 5-token one
        glob = ref.attention_ref(qkv, OFFSETS, heads)
        assert np.abs(want[5:30] - glob[5:30]).max() > 1e-2
        np.testing.assert_allclose(want[:5], glob[:5], atol=KERNEL_ATOL)


def test_window_reference_matches_transformers_mask():
    """The reference's window against ModernBERT's eager attention with its own sliding-window mask."""
    torch = pytest.importorskip("torch")
    heads, hidden, local_attention, T = 2, 32, 8, 20
    qkv = _qkv(T, hidden, seed=2)
    x = torch.from_numpy(qkv).view(1, T, 3, heads, hidden // heads).transpose(3, 1)
    q, k, v = x.unbind(dim=2)
    rows = torch.arange(T)[None]
    allowed = (torch.abs(rows - rows.T) <= local_attention // 2)
    mask = torch.zeros(T, T).masked_fill(~allowed, torch.finfo(torch.float32).min)
    w = torch.softmax(q @ k.transpose(2, 3) * (hidden // heads) ** -0.5 + mask, dim=-1)
    want = (w @ v).transpose(1, 2).reshape(T, hidden).numpy()
    got = ref.attention_ref(qkv, np.array([0, T]), heads, local_attention // 2)
    np.testing.assert_allclose(got, want, atol=KERNEL_ATOL)


def test_add_and_mean_pool_kernels_match_references():
    rng = np.random.default_rng(3)
    x, r = rng.standard_normal((47, 24)).astype(np.float32), rng.standard_normal((47, 24)).astype(np.float32)
    out = np.empty_like(x)
    add(x, r, out)
    np.testing.assert_array_equal(out, ref.add_ref(x, r))
    offsets = np.array([0, 5, 30, 47], dtype=np.int64)
    pooled = np.empty((3, 24), dtype=np.float32)
    mean_pool(x, offsets, pooled)
    np.testing.assert_allclose(pooled, ref.mean_pool_ref(x, offsets), atol=KERNEL_ATOL)
    np.testing.assert_allclose(pooled[1], x[5:30].mean(axis=0), atol=KERNEL_ATOL)
