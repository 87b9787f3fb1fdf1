"""Real English text for tests, benchmarks and calibration: gensim's test data.

gensim is a test/bench extra, never a runtime dependency; it is imported only here.
"""
from __future__ import annotations

import re


def _datapath(name: str) -> str:
    try:
        from gensim.test.utils import datapath
    except ImportError:
        raise ImportError("real-text corpora need gensim: pip install 'edgebert[test]'") from None
    return datapath(name)


def pang_lee() -> tuple[list[str], list[int]]:
    """The 200 labelled review sentences (latin-1 file): texts and labels (1 = positive)."""
    texts, labels = [], []
    with open(_datapath("pang_lee_polarity.cor"), encoding="latin-1") as f:
        for line in f:
            label, _, text = line.strip().partition(" ")
            texts.append(text)
            labels.append(1 if label == "__label__pos" else 0)
    return texts, labels


def lee_background() -> list[str]:
    """The 300 news articles, one per line."""
    with open(_datapath("lee_background.cor"), encoding="utf-8", errors="strict") as f:
        return [line.strip() for line in f if line.strip()]


def lee_sentences() -> list[str]:
    """The articles split into sentences (a real corpus of mixed lengths)."""
    out = []
    for article in lee_background():
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", article) if s.strip()]
    return out
