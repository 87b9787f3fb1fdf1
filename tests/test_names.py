"""edgebert/names.py against docs/format.md, and the traits that follow from a role, not a name."""
from __future__ import annotations

from pathlib import Path

from edgebert import names
from edgebert.converters.spec import EncoderConfig, bert_slots

DOC = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
TINY = EncoderConfig(vocab_size=10, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16,
                     max_position_embeddings=6, type_vocab_size=2, layer_norm_eps=1e-12)


def test_every_metadata_key_is_documented():
    for key in names.METADATA_KEYS:
        assert f"`{key}`" in DOC, key


def test_every_tensor_role_is_documented():
    for role in names.ROLES:
        assert f"`{role.template}." in DOC, role.template


def test_encoder_slots_carry_their_roles_traits():
    slots = bert_slots(TINY)
    quantized = {name for name, slot in slots.items() if slot.quantized}
    assert quantized == {"token_embd.weight"} | {f"blk.{i}.{kind}.weight" for i in range(2)
                                                  for kind in ("attn_qkv", "attn_output", "ffn_up", "ffn_down")}
    smoothed = {slot.role.prefix(int(name.split(".")[1])) for name, slot in slots.items()
                if slot.role.smoothed and slot.suffix == names.WEIGHT}
    assert smoothed == {f"blk.{i}.{kind}" for i in range(2) for kind in ("attn_qkv", "ffn_up")}
    assert all(not s.quantized for s in slots.values() if s.suffix == names.BIAS)


def test_a_role_under_another_name_keeps_its_traits():
    """Traits live on the role: a family that names its layers differently loses no smoothing."""
    renamed = names.Role("layers.{i}.mlp_in", "linear", smoothed=True, calibrated=True)
    assert renamed.prefix(3) == "layers.3.mlp_in" and renamed.smoothed and renamed.quantized
