"""Tiny random transformers models of the BERT family's relatives, with tokenizers trained here
(HF tokenizers: WordPiece from MiniLM's vocabulary, byte-level BPE for RoBERTa, Unigram for
XLM-R and CamemBERT), saved as transformers saves them. Not a test module."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import scale_layers

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids: <s> 0, <pad> 1, </s> 2
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
# Random heads (std 0.02) give near-uniform scores; scaling the final layers gives the
# pipelines real margins to agree on (as tests/conftest.py's HEAD_SCALES). Suffix -> factor.
HEAD_SCALES = {"classifier.weight": 30.0, "classifier.out_proj.weight": 30.0, "qa_outputs.weight": 30.0,
               "dense_prediction.weight": 30.0, "vocab_layer_norm.weight": 8.0, "lm_head.layer_norm.weight": 8.0,
               "generator_predictions.LayerNorm.weight": 8.0,
               # MPNet's relative position bias: std 1 instead of 0.02, so a wrong bucket shows
               "relative_attention_bias.weight": 50.0,
               "predictions.LayerNorm.weight": 8.0, "sop_classifier.classifier.weight": 30.0}

# family -> (config class, config overrides, tokenizer kind)
FAMILIES = {
    "distilbert": ("DistilBertConfig", dict(dim=32, n_layers=2, n_heads=4, hidden_dim=64,
                                            max_position_embeddings=64), "wordpiece"),
    "roberta": ("RobertaConfig", dict(SIZES, max_position_embeddings=66, type_vocab_size=1), "bpe"),
    "xlm-roberta": ("XLMRobertaConfig", dict(SIZES, max_position_embeddings=66, type_vocab_size=1), "unigram"),
    "camembert": ("CamembertConfig", dict(SIZES, max_position_embeddings=66, type_vocab_size=1), "unigram"),
    "electra": ("ElectraConfig", dict(SIZES, embedding_size=16, max_position_embeddings=64), "wordpiece"),
    "mpnet": ("MPNetConfig", dict(SIZES, max_position_embeddings=66), "bpe"),
    # 3 layers reading one shared set of weights; E 16 -> H 32; hidden_act gelu_new (the default)
    "albert": ("AlbertConfig", dict(SIZES, num_hidden_layers=3, embedding_size=16, max_position_embeddings=64),
               "unigram"),
}
NO_TOKEN_TYPES = ("mpnet",)


def train_tokenizer(kind: str, texts: list[str]):
    """A tokenizers.Tokenizer of ``kind`` trained on ``texts``, with RoBERTa's pair template."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=600, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
        return tok
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])  # as XLM-R
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainers.UnigramTrainer(vocab_size=600, special_tokens=SPECIALS,
                                                           unk_token="<unk>"))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    return tok


def save_tokenizer(folder: Path, kind: str, texts: list[str], minilm: Path, family: str) -> int:
    """Tokenizer files into ``folder``; returns the vocabulary size."""
    if kind == "wordpiece":
        for name in ("tokenizer.json", "vocab.txt", "special_tokens_map.json"):
            shutil.copy(minilm / name, folder / name)
        cfg = json.loads((minilm / "tokenizer_config.json").read_text())
        # DistilBERT's tokenizer gives no token types (its model takes none)
        cfg["tokenizer_class"] = "DistilBertTokenizer" if family == "distilbert" else "ElectraTokenizer"
        (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
        return 30522
    from transformers import PreTrainedTokenizerFast

    tok = train_tokenizer(kind, texts)
    # models without token types take no token_type_ids (MPNet's forward refuses them)
    inputs = {"model_input_names": ["input_ids", "attention_mask"]} if family in NO_TOKEN_TYPES else {}
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   sep_token="</s>", cls_token="<s>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=64, **inputs)
    fast.save_pretrained(folder)
    return tok.get_vocab_size()


def make_family_model(folder: Path, family: str, model_class: str, texts: list[str], minilm: Path,
                      seed: int = 0, **overrides) -> Path:
    """A randomly initialised transformers ``model_class`` of ``family``, saved with its tokenizer."""
    import torch
    import transformers

    config_class, sizes, kind = FAMILIES[family]
    folder.mkdir(parents=True, exist_ok=True)
    vocab = save_tokenizer(folder, kind, texts, minilm, family)
    torch.manual_seed(seed)
    cfg = getattr(transformers, config_class)(**{**sizes, "vocab_size": vocab, **overrides})
    model = getattr(transformers, model_class)(cfg).eval()
    scale_layers(model, HEAD_SCALES)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
