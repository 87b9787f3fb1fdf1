"""Tiny random transformers ModernBERT models with a byte-level BPE tokenizer trained here (as
ModernBERT's own: ByteLevel pre-tokenizer and decoder, NFC, [CLS] $A [SEP] template), saved as
transformers saves them. Not a test module."""
from __future__ import annotations

from pathlib import Path

from conftest import scale_layers

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # ids 0..4
# 3 layers: layer 0 global, layers 1 and 2 local with a window of 8 (keys at most 4 tokens away), so
# sentences of 10+ tokens are windowed; distinct bases for global and local rotary positions.
CONFIG = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
              max_position_embeddings=128, local_attention=8, global_attn_every_n_layers=3,
              global_rope_theta=10000.0, local_rope_theta=1000.0, pad_token_id=0, cls_token_id=2, sep_token_id=3,
              bos_token_id=2, eos_token_id=3, reference_compile=False, attn_implementation="eager")
# Random heads (std 0.02) give near-uniform scores; scaling the final layers gives the pipelines real
# margins to agree on (as tests/family_models.py): the classifier, or the masked LM's head norm. Suffix -> factor.
# Attention projections x8 (scores x64): with std 0.02 the scores are so small that rotary angles,
# and so a wrong theta, change the states by less than the 1e-4 tolerance.
QKV_SCALES = {"attn.Wqkv.weight": 8.0}
HEAD_SCALES = {**QKV_SCALES, "classifier.weight": 30.0}
MLM_SCALES = {**QKV_SCALES, "head.norm.weight": 8.0}


def train_tokenizer(texts: list[str]):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return tok


def make_modernbert(folder: Path, model_class: str, texts: list[str], seed: int = 0, **overrides) -> Path:
    """A randomly initialised transformers ``model_class`` (ModernBertForMaskedLM ...), saved with its tokenizer."""
    import torch
    import transformers
    from transformers import PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tok = train_tokenizer(texts)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", cls_token="[CLS]",
                            pad_token="[PAD]", mask_token="[MASK]", model_max_length=128,
                            model_input_names=["input_ids", "attention_mask"]).save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = transformers.ModernBertConfig(**{**CONFIG, "vocab_size": tok.get_vocab_size(), **overrides})
    model = getattr(transformers, model_class)(cfg).eval()
    scale_layers(model, MLM_SCALES if model_class.endswith("MaskedLM") else HEAD_SCALES)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
