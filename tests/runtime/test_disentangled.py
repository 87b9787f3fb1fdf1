"""DeBERTa-v2's disentangled attention op: buckets and one attention layer vs transformers, kernel vs reference."""
from __future__ import annotations

import numpy as np
import pytest

from edgebert.runtime.executor import offsets_and_positions
from edgebert.runtime.kernels.disentangled import disentangled_attention, distance_index, make_scratch, scale
from edgebert.runtime.reference import (disentangled_attention_ref, disentangled_positions_ref, log_buckets_ref)

# float32 accumulation (kernel) vs float64 scores and context (reference) on unit-scale values.
KERNEL_ATOL = 3e-6
# reference (float64) vs torch float32 on one layer with unit-scale states: float32 rounding of scores ~10.
TORCH_ATOL = 1e-5


@pytest.mark.parametrize("buckets, max_rel", [(256, 512), (8, 16), (16, 64), (0, 24)])
def test_buckets_match_transformers(buckets, max_rel):
    """Every distance up to 2048 both ways, float32 ceil included."""
    torch = pytest.importorskip("torch")
    from transformers.models.deberta_v2.modeling_deberta_v2 import make_log_bucket_position

    d = np.arange(-2048, 2049)
    theirs = make_log_bucket_position(torch.tensor(d), buckets, max_rel).long().numpy() if buckets else d
    np.testing.assert_array_equal(log_buckets_ref(d, buckets, max_rel), theirs)


@pytest.mark.parametrize("share, norm, buckets", [(True, True, 8), (False, False, 8), (False, True, 0)])
def test_reference_matches_transformers_layer(share, norm, buckets):
    """One DisentangledSelfAttention (v3: shared keys, normed rel table; v2: own position projections),
    sequences past the exact buckets so log buckets and clamping count."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers.models.deberta_v2.modeling_deberta_v2 import DebertaV2Encoder

    torch.manual_seed(0)
    cfg = transformers.DebertaV2Config(hidden_size=16, num_attention_heads=2, num_hidden_layers=1,
                                       intermediate_size=8, relative_attention=True, pos_att_type=["p2c", "c2p"],
                                       position_buckets=buckets, max_relative_positions=16 if buckets else 12,
                                       share_att_key=share, norm_rel_ebd="layer_norm" if norm else "none")
    enc = DebertaV2Encoder(cfg).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.5)
    att = enc.layer[0].attention.self
    lengths = [30, 5, 1]
    x = torch.randn(len(lengths), max(lengths), 16)
    mask = torch.tensor([[1] * n + [0] * (max(lengths) - n) for n in lengths])
    with torch.no_grad():
        want, _ = att(x, enc.get_attention_mask(mask), relative_pos=enc.get_rel_pos(x),
                      rel_embeddings=enc.get_rel_embedding())
        packed = x[mask.bool()]
        qkv = torch.cat([att.query_proj(packed), att.key_proj(packed), att.value_proj(packed)], 1).numpy()
        pq, pk = (att.query_proj, att.key_proj) if share else (att.pos_query_proj, att.pos_key_proj)
        w = torch.cat([pq.weight, pk.weight]).numpy()
        b = torch.cat([pq.bias, pk.bias]).numpy()
        rel = enc.rel_embeddings.weight.numpy()
        ln = (enc.LayerNorm.weight.numpy(), enc.LayerNorm.bias.numpy(), cfg.layer_norm_eps) if norm else None
    pos_query, pos_key = disentangled_positions_ref(rel, w, b, 2, ln)
    offsets, _ = offsets_and_positions(lengths)
    got = disentangled_attention_ref(qkv, offsets, 2, pos_query, pos_key, buckets, cfg.max_relative_positions)
    np.testing.assert_allclose(got, want[mask.bool()].numpy(), atol=TORCH_ATOL, rtol=0)


@pytest.mark.parametrize("lengths, heads, d, buckets, max_rel", [
    ([1], 2, 4, 8, 16), ([5, 17, 40], 4, 8, 8, 16), ([130, 3], 2, 64, 256, 512), ([9, 20], 2, 8, 0, 6)])
def test_kernel_matches_reference(lengths, heads, d, buckets, max_rel):
    rng = np.random.default_rng(len(lengths))
    offsets, _ = offsets_and_positions(lengths)
    span = buckets or max_rel
    qkv = rng.standard_normal((int(offsets[-1]), 3 * heads * d)).astype(np.float32)
    pos_query, pos_key = (rng.standard_normal((heads, 2 * span, d)).astype(np.float32) for _ in range(2))
    c2p, p2c, centre = distance_index(buckets, max_rel, span, max(lengths))
    out = np.empty((qkv.shape[0], heads * d), np.float32)
    disentangled_attention(qkv, offsets, heads, pos_key, pos_query * np.float32(scale(d)), c2p, p2c, centre, out,
                           make_scratch(max(lengths), d))
    want = disentangled_attention_ref(qkv, offsets, heads, pos_query, pos_key, buckets, max_rel)
    np.testing.assert_allclose(out, want, atol=KERNEL_ATOL, rtol=0)


def test_kernel_refuses_a_sequence_longer_than_its_table():
    c2p, p2c, centre = distance_index(8, 16, 8, 8)
    pos = np.zeros((1, 16, 2), np.float32)
    with pytest.raises(ValueError, match="longer than the distance table"):
        disentangled_attention(np.zeros((9, 6), np.float32), np.array([0, 9]), 1, pos, pos, c2p, p2c, centre,
                               np.empty((9, 2), np.float32), make_scratch(9, 2))
