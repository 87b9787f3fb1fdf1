"""Self-attention with a bucketed relative position bias (MPNet's; T5's bidirectional buckets).

Scores are q.k / sqrt(d) + bias[h, bucket(j - i)]: the bias depends only on the
distance j - i, so the table is expanded once per model (``distance_bias``, shared
by every layer) into ``by_distance`` (nh, C): row h, column ``centre + j - i``, so
the biases of 16 consecutive keys are one contiguous vector. The item is attention's
(``attention.item_attention`` with ``biased``: its register tiles, softmax and context;
one (sequence, head) per thread, so results do not depend on the thread count). The
kernel before it, one query and one key at a time with a horizontal sum per score,
took 42 ms of all-mpnet-base-v2's 274 ms at 1x128, one thread (AVX2, native library); this one 16 ms.
Reference: ``runtime.reference.attention_ref`` with ``relative_bias_ref``.
"""
from __future__ import annotations

import numpy as np

# The kernel lives in attention.py beside the item it runs: Numba's disk cache is keyed on the caller's
# own file, so a kernel here would keep a stale copy of item_attention after an edit there.
from .attention import relative_attention  # noqa: F401  (the op's kernel, by this module's name)
from .attention_layout import distance_bias, per_thread, relative_scratch_size  # noqa: F401  (binders')


def scratch_size(max_len: int, head_dim: int) -> int:
    return relative_scratch_size(max_len, head_dim)


def make_scratch(max_len: int, head_dim: int) -> np.ndarray:
    return per_thread(relative_scratch_size(max_len, head_dim))
