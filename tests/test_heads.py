"""Every BERT task head: convert a tiny random transformers model, compare logits with FP32 torch."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.format import read_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# float32 file vs torch: same math, only float32 summation order differs.
FP32_ATOL = 1e-4
# int8 file vs torch: the encoder's quantization noise (INT8_ATOL = 0.08 on
# unit-variance hidden states, tests/test_end_to_end.py) passes linearly
# through the head, so the bound is relative to the logits' own scale.
# Measured worst: 1.6% (pretraining's NSP logits), MLM 1.5%, others <= 0.9%.
INT8_REL = 0.03
# Numba kernels vs NumPy references on the same int8 file (see test_end_to_end):
# float32 rounding may flip a rare activation to the neighbouring int8 step,
# and a head multiplies that step by its weights, so the bound is relative to
# the logits' own scale. Measured worst: 0.24% (pretraining's MLM logits, one
# flipped token row of 63, transformers 4.57's random init); others < 0.01%.
KERNEL_REL = 5e-3

HEADS = {  # class -> (outputs compared, config overrides)
    "BertForSequenceClassification": (["logits"], {"num_labels": 3}),
    "BertForTokenClassification": (["logits"], {"num_labels": 5}),
    "BertForQuestionAnswering": (["start_logits", "end_logits"], {}),
    "BertForMaskedLM": (["logits"], {}),
    "BertForNextSentencePrediction": (["logits"], {}),
    "BertForPreTraining": (["prediction_logits", "seq_relationship_logits"], {}),
}
FIRST = ["Hello world!", "A considerably longer sentence, with punctuation; and more words to pad.", "x"]
SECOND = ["It was fine.", "Short.", "Numbers 12345 and ümlauts too."]


def _torch_outputs(folder, names, pairs=True):
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    batch = tok(FIRST, SECOND if pairs else None, padding=True, return_tensors="pt")
    model = getattr(transformers, transformers.AutoConfig.from_pretrained(folder).architectures[0]
                    ).from_pretrained(folder).eval()
    with torch.no_grad():
        out = model(**batch)
    return {k: v.numpy() for k, v in batch.items()}, {n: out[n].numpy() for n in names}


def _rows(x, mask):
    """Real rows only: per-token outputs at unmasked positions; per-sequence ones as they are."""
    return x[mask.astype(bool)] if x.shape[:2] == mask.shape else x


@pytest.mark.parametrize("model_class", list(HEADS))
def test_head_logits_match_transformers(tiny_head, model_class):
    names, cfg = HEADS[model_class]
    batch, expected = _torch_outputs(tiny_head(model_class, **cfg), names)
    args = (batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    fp32 = edgebert.load(tiny_head(model_class, "float32", **cfg)).forward(*args)
    int8 = edgebert.load(tiny_head(model_class, "int8", **cfg)).forward(*args)
    slow = edgebert.load(tiny_head(model_class, "int8", **cfg), backend="numpy").forward(*args)
    mask = batch["attention_mask"]
    for name in names:
        ref = _rows(expected[name], mask)
        assert fp32[name].shape == expected[name].shape
        np.testing.assert_allclose(_rows(fp32[name], mask), ref, atol=FP32_ATOL, rtol=0, err_msg=name)
        err = np.abs(_rows(int8[name], mask) - ref).max()
        assert err <= INT8_REL * np.abs(ref).max(), f"{name}: int8 error {err:.4f}"
        np.testing.assert_allclose(int8[name], slow[name], atol=KERNEL_REL * np.abs(slow[name]).max(), rtol=0,
                                   err_msg=name)


def test_head_metadata_travels_in_the_file(tiny_head):
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    path = tiny_head("BertForSequenceClassification", "int8", num_labels=3, id2label=labels,
                     problem_type="multi_label_classification")
    head = read_model(path).json("edgebert.head")
    assert head == {"task": "sequence-classification", "id2label": {str(k): v for k, v in labels.items()},
                    "problem_type": "multi_label_classification"}
    model = edgebert.load(path)
    assert model.head["task"] == "sequence-classification"
    assert model.embed(["still an encoder"]).shape == (1, 64)  # heads do not change embed()


def test_small_final_layers_stay_float32(tiny_head):
    f = read_model(tiny_head("BertForQuestionAnswering", "int8"))
    assert f.tensors["qa.weight"].dtype == np.float32 and "qa.scale" not in f.tensors
    assert f.tensors["blk.0.ffn_up.weight"].dtype == np.int8


def test_untied_mlm_decoder(tiny_head):
    folder = tiny_head("BertForMaskedLM", tie_word_embeddings=False)
    batch, expected = _torch_outputs(folder, ["logits"])
    path = tiny_head("BertForMaskedLM", "float32", tie_word_embeddings=False)
    assert "mlm.decoder.weight" in read_model(path).tensors
    got = edgebert.load(path).forward(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    mask = batch["attention_mask"]
    np.testing.assert_allclose(_rows(got["logits"], mask), _rows(expected["logits"], mask), atol=FP32_ATOL, rtol=0)


def test_graph_validation_refuses_a_broken_head(tiny_head):
    from edgebert.errors import InvalidModelFile
    from edgebert.format import validate_graph

    f = read_model(tiny_head("BertForMaskedLM", "int8"))
    graph, config = f.json("edgebert.graph"), f.json("edgebert.config")
    validate_graph(graph, f.tensors, config)
    tensors = {k: v for k, v in f.tensors.items() if k != "mlm.decoder.bias"}
    with pytest.raises(InvalidModelFile, match="tied_linear.*mlm.decoder.bias"):
        validate_graph(graph, tensors, config)
