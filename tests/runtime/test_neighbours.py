"""The neighbours kernel (DeBERTa-v2's convolution: each row's sequence neighbours side by side, zeros past
the sequence's ends) against its NumPy reference, and a linear over it against a same-padded Conv1d."""
from __future__ import annotations

import numpy as np
import pytest

from edgebert.runtime import reference as ref
from edgebert.runtime.kernels.residual import neighbours

OFFSETS = np.array([0, 1, 3, 20, 26], dtype=np.int64)  # a one-token and a two-token sequence among longer ones


@pytest.mark.parametrize("size", [1, 3, 5])
def test_kernel_is_the_reference_bit_for_bit(size):
    rng = np.random.default_rng(size)
    x = rng.standard_normal((26, 12)).astype(np.float32)
    out = np.full((26, size * 12), np.nan, np.float32)  # every element written, zeros included
    neighbours(x, OFFSETS, size, out)
    np.testing.assert_array_equal(out, ref.neighbours_ref(x, OFFSETS, size))


def test_reference_never_crosses_a_sequence_boundary():
    x = np.arange(1, 27, dtype=np.float32)[:, None]  # row t holds t + 1
    got = ref.neighbours_ref(x, OFFSETS, 3)
    assert got[0].tolist() == [0, 1, 0]  # a one-token sequence sees only itself
    assert got[1].tolist() == [0, 2, 3] and got[2].tolist() == [2, 3, 0]
    assert got[3].tolist() == [0, 4, 5] and got[19].tolist() == [19, 20, 0]


def test_linear_over_neighbours_is_a_same_padded_conv1d():
    """Column j C + c of the linear is w[o, c, j] (converters/family.py's layout): torch's Conv1d per sequence."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((26, 6)).astype(np.float32), rng.standard_normal((4, 6, 3)).astype(np.float32)
    got = ref.neighbours_ref(x, OFFSETS, 3) @ w.transpose(0, 2, 1).reshape(4, -1).T
    conv = torch.nn.functional.conv1d
    for s, e in zip(OFFSETS[:-1], OFFSETS[1:]):
        want = conv(torch.from_numpy(x[s:e].T[None]), torch.from_numpy(w), padding=1)[0].numpy().T
        np.testing.assert_allclose(got[s:e], want, atol=1e-5)
