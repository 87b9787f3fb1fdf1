"""Task-level check: a classifier on int8 embeddings is as accurate as on FP32 ones (Pang-Lee sentiment)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import edgebert

sklearn = pytest.importorskip("sklearn")
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402

REFERENCE = Path(__file__).parent / "data" / "reference" / "all-MiniLM-L6-v2.pang_lee.npz"
# 200 sentences, 10-fold CV: one test sentence is 5 % of a fold and the fold
# accuracies spread by about 0.08 (std); 0.02 is well inside that noise yet
# would catch embeddings that stopped carrying the sentiment.
MAX_ACCURACY_GAP = 0.02


def test_same_accuracy_fp32_and_int8(minilm_int8, pang_lee_texts):
    from edgebert.corpora import pang_lee
    from edgebert.reference import load_reference

    labels = np.array(pang_lee()[1])
    fp32 = load_reference(REFERENCE)["pooled"]
    int8 = edgebert.load(minilm_int8).embed(pang_lee_texts)
    folds = StratifiedKFold(n_splits=10, shuffle=True, random_state=0)
    acc = {name: cross_val_score(LogisticRegression(C=1.0, max_iter=2000), x, labels, cv=folds).mean()
           for name, x in (("fp32", fp32), ("int8", int8))}
    print(f"logistic regression, 10-fold CV accuracy: FP32 {acc['fp32']:.3f}, int8 {acc['int8']:.3f}")
    assert acc["fp32"] > 0.6  # the embeddings do carry the sentiment
    assert abs(acc["fp32"] - acc["int8"]) <= MAX_ACCURACY_GAP
