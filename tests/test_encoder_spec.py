"""The flagged encoder spec: flags a loader sets instead of writing a graph builder."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.converters.pipeline import metadata, quantize_spec
from edgebert.converters.spec import FLAGS, EncoderConfig, ModelSpec
from edgebert.errors import UnsupportedModel
from edgebert.format import write_model

SIZES = dict(vocab_size=8, hidden_size=16, num_layers=2, num_heads=2, intermediate_size=24,
             max_position_embeddings=32, type_vocab_size=2, layer_norm_eps=1e-12)
# Numba kernels vs NumPy references on one file (tests/test_end_to_end.py's KERNEL_ATOL):
# the integer GEMMs agree exactly; float32 rounding may flip a rare int8 activation step.
KERNEL_ATOL = 2e-3


@pytest.mark.parametrize("flag, value", [("norm_placement", "sandwich"), ("position", "alibi"), ("bias", False),
                                         ("position_offset", -1), ("shared_layers", "yes"), ("embedding_size", 0),
                                         ("feed_forward", "swiglu"), ("position_ids", "rank")])
def test_unimplemented_flags_are_refused_with_what_is_supported(flag, value):
    with pytest.raises(UnsupportedModel, match=rf"{flag} .* is not supported yet; supported: "):
        EncoderConfig(**SIZES, **{flag: value})
    assert value not in FLAGS[flag]


def test_integer_flags_take_any_integer_in_range():
    config = EncoderConfig(**SIZES, position_offset=2, embedding_size=8)
    assert config.max_positions == 30 and config.embedding_width == 8
    with pytest.raises(UnsupportedModel, match="position_offset 32 leaves no row"):
        EncoderConfig(**SIZES, position_offset=32)
    with pytest.raises(UnsupportedModel, match="supported: None, an integer >= 1"):
        EncoderConfig(**SIZES, embedding_size=True)


def test_bert_defaults_are_the_first_supported_values():
    config = EncoderConfig(**SIZES)
    assert all(getattr(config, flag) == values[0] for flag, values in FLAGS.items())


def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2),
                                                                                                 ("[SEP]", 3)])
    return tok.to_str()


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_gated_feed_forward_converts_and_runs_on_both_backends(tmp_path, dtype):
    config = EncoderConfig(**SIZES, feed_forward="gated")
    spec = ModelSpec(source_architecture="test", config=config, tokenizer_json=_tokenizer_json(), max_length=32,
                     pad_token_id=0)
    assert spec.slots["blk.0.ffn_up.weight"].shape == (2 * 24, 16)
    rng = np.random.default_rng(0)
    for name, slot in spec.slots.items():
        spec[name] = rng.standard_normal(slot.shape).astype(np.float32) * 0.2
    path = tmp_path / f"gated.{dtype}.edgebert"
    tensors, report = quantize_spec(spec, dtype)
    write_model(path, tensors, metadata(spec, dtype, report))
    texts = ["a b c d a b", "d c", "a"]
    fast = edgebert.load(path).embed(texts)
    slow = edgebert.load(path, backend="numpy").embed(texts)
    assert [n["op"] for n in edgebert.load(path).file.json("edgebert.graph")["nodes"]].count("geglu") == 2
    np.testing.assert_allclose(fast, slow, atol=KERNEL_ATOL, rtol=0)
