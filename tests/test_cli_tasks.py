"""The task commands: classify, ner, qa, fill-mask, summarize; JSON lines, same as the pipelines."""
from __future__ import annotations

import io
import json
import sys

import edgebert
from edgebert.cli import main

NER = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _lines(capsys):
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_classify_args_pairs_and_stdin(tiny_head, capsys, monkeypatch):
    path = tiny_head("BertForSequenceClassification", "int8", num_labels=3)
    pipe = edgebert.pipeline("text-classification", model=path)
    assert main(["classify", str(path), "good film", "bad film", "--top-k", "2"]) == 0
    assert _lines(capsys) == pipe(["good film", "bad film"], top_k=2)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("A man sings.\tSomeone makes music.\n".encode())))
    assert main(["classify", str(path), "--pairs"]) == 0
    assert _lines(capsys) == pipe([{"text": "A man sings.", "text_pair": "Someone makes music."}], top_k=1)


def test_ner_from_file(tiny_head, tmp_path, capsys):
    path = tiny_head("BertForTokenClassification", "int8", num_labels=5, id2label=NER)
    texts = ["Ana lives in Paris.", "Hugging Face is in New York"]
    (tmp_path / "in.txt").write_text("\n".join(texts), encoding="utf-8")
    assert main(["ner", str(path), "--input", str(tmp_path / "in.txt"), "--aggregation", "first"]) == 0
    assert _lines(capsys) == edgebert.pipeline("ner", model=path)(texts, aggregation_strategy="first")


def test_qa_fill_mask_summarize(tiny_head, capsys):
    qa = tiny_head("BertForQuestionAnswering", "int8")
    context = "The tower was designed by Gustave Eiffel in 1887."
    assert main(["qa", str(qa), "--question", "Who designed it?", context]) == 0
    (answer,) = _lines(capsys)
    assert context[answer["start"]:answer["end"]] == answer["answer"]
    mlm = tiny_head("BertForMaskedLM", "int8")
    assert main(["fill-mask", str(mlm), "Paris is the [MASK] of France.", "--top-k", "3"]) == 0
    (row,) = _lines(capsys)
    assert len(row) == 3 and all("[MASK]" not in r["sequence"] for r in row)
    doc = "Cats purr. Dogs bark loudly. Cats and dogs are pets. The stock market fell."
    assert main(["summarize", str(mlm), doc, "--max-sentences", "2"]) == 0
    (summary,) = _lines(capsys)
    assert len(summary["sentence_indices"]) == 2


def test_task_errors_exit_2(tiny_head, capsys):
    mlm = tiny_head("BertForMaskedLM", "int8")
    assert main(["fill-mask", str(mlm), "no mask here"]) == 2
    assert "no mask token" in capsys.readouterr().err
    assert main(["qa", str(mlm), "--question", "Who?", "context"]) == 2
    assert "question-answering head" in capsys.readouterr().err
