"""Real inputs: token ids of exact lengths cut from real news text, and the corpora."""
from __future__ import annotations

from pathlib import Path

import numpy as np

LATENCY_SHAPES = ((1, 16), (1, 128), (1, 512), (32, 128))  # (batch, tokens)


def token_stream(model_dir: str) -> tuple[list[int], int, int]:
    """Word-piece ids of the Lee news articles, concatenated, without special tokens."""
    from tokenizers import Tokenizer

    from edgebert.corpora import lee_background

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    stream = []
    for enc in tok.encode_batch(lee_background(), add_special_tokens=False):
        stream += enc.ids
    return stream, tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")


def latency_inputs(model_dir: str, shapes=LATENCY_SHAPES) -> dict:
    """{(B, T): (ids, mask, types)} int64, every row a different real window [CLS] ... [SEP]."""
    stream, cls, sep = token_stream(model_dir)
    out = {}
    for b, t in shapes:
        rows = []
        for r in range(b):
            start = (r * 1009 + t * 7) % (len(stream) - t)
            rows.append([cls] + stream[start:start + t - 2] + [sep])
        ids = np.array(rows, dtype=np.int64)
        out[(b, t)] = (ids, np.ones_like(ids), np.zeros_like(ids))
    return out


def throughput_corpus(limit: int | None = None) -> list[str]:
    """All sentences of the Lee background corpus (the first ``limit`` in quick mode)."""
    from edgebert.corpora import lee_sentences

    texts = lee_sentences()
    return texts[:limit] if limit else texts


def accuracy_corpus() -> list[str]:
    from edgebert.corpora import pang_lee

    return pang_lee()[0]
