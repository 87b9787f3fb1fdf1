"""Tiny random transformers DeBERTa-v2/v3 models with a Unigram tokenizer trained here (DeBERTa-v3's
specials and [CLS] A [SEP] B [SEP] template), saved as transformers saves them. Not a test module."""
from __future__ import annotations

from pathlib import Path

from conftest import scale_layers

SPECIALS = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]  # DeBERTa-v3's ids 0..3; [MASK] last there, 4 here
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64, relative_attention=True, pos_att_type=["p2c", "c2p"])
# 8 buckets (exact within +-4, log-spaced to max_relative_positions, clamped at 8 either way), so the
# test sentences of 10-40 tokens use every regime of the bucketing.
STYLES = {
    # v3 / mDeBERTa: no absolute positions, position keys from the layers' own q/k, normed rel table
    "v3": dict(SIZES, position_biased_input=False, share_att_key=True, norm_rel_ebd="layer_norm",
               position_buckets=8, max_relative_positions=16, type_vocab_size=0),
    # v2-style: absolute positions too, own position projections, no norm, token types, max_relative_positions
    # -1 (transformers reads max_position_embeddings)
    "v2": dict(SIZES, position_biased_input=True, share_att_key=False, norm_rel_ebd="none",
               position_buckets=8, max_relative_positions=-1, type_vocab_size=2),
}
# Random layers (std 0.02) give near-uniform attention, where a wrong position term moves the states by
# less than the tolerance: the q, k and position projections x8 and the rel table x25 make the scores
# depend on them (and the convolution's weight x8 its output); the final layers x30 (x8 the MLM norm, x20 the ContextPooler: its output varies with
# the text) give pipelines real margins. Suffix -> factor.
SCALES = {"query_proj.weight": 8.0, "key_proj.weight": 8.0, "pos_query_proj.weight": 8.0,
          "pos_key_proj.weight": 8.0, "rel_embeddings.weight": 25.0, "classifier.weight": 30.0,
          "qa_outputs.weight": 30.0, "transform.LayerNorm.weight": 8.0, "pooler.dense.weight": 20.0,
          "conv.conv.weight": 8.0}


def train_tokenizer(texts: list[str]):
    """SentencePiece-style Unigram ("▁" for spaces, as DeBERTa-v3's spm.model converted; NFKC: edgebert's
    tokenizer allowlist has no Nmt normalizer), with DeBERTa's template."""
    from tokenizers import normalizers, processors
    from tokenizers.implementations import SentencePieceUnigramTokenizer

    spm = SentencePieceUnigramTokenizer()
    spm.train_from_iterator(texts, vocab_size=600, special_tokens=SPECIALS, unk_token="[UNK]", show_progress=False)
    tok = spm._tokenizer
    tok.normalizer = normalizers.NFKC()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    return tok


def make_deberta(folder: Path, model_class: str, texts: list[str], style: str = "v3", seed: int = 0,
                 **overrides) -> Path:
    """A randomly initialised transformers ``model_class`` (DebertaV2ForMaskedLM ...) of ``style``, with its tokenizer."""
    import torch
    import transformers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts)
    inputs = {} if STYLES[style]["type_vocab_size"] else {"model_input_names": ["input_ids", "attention_mask"]}
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", cls_token="[CLS]",
                            pad_token="[PAD]", mask_token="[MASK]", model_max_length=64,
                            **inputs).save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = transformers.DebertaV2Config(**{**STYLES[style], "vocab_size": tok.get_vocab_size(), **overrides})
    model = getattr(transformers, model_class)(cfg).eval()
    scale_layers(model, SCALES)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
