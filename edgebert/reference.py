"""FP32 reference results from the original model (PyTorch/transformers), for ``edgebert verify``.

Runs on a CUDA GPU when one is present, else on the CPU, and says which in the
file. Stores the token ids it used, so verification compares the same inputs
whatever the tokenizer. torch and transformers are converter/test extras.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import platform
from pathlib import Path

import numpy as np

from .errors import InputError

LAYER_TEXTS = 16  # texts whose token-level hidden states of every layer are stored (keeps the file small)
BATCH = 32


def source_hash(folder: Path) -> str:
    """SHA-256 over the weight files of a model folder (safetensors or pickle), name by name."""
    h = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix in (".safetensors", ".bin") and p.is_file())
    for path in files:
        h.update(path.relative_to(folder).as_posix().encode())
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
    return h.hexdigest()


def make_reference(src: str | Path, texts: list[str], out: str | Path, device: str | None = None) -> dict:
    """Run the original model in FP32 and write ``out`` (.npz); returns the metadata."""
    import torch
    import transformers

    from .converters.source import sentence_transformers_settings

    if not texts:
        raise InputError("reference needs at least one text")
    folder = Path(src)
    st = sentence_transformers_settings(folder)
    model_dir = st["transformer_dir"] if st else folder
    pooling = st["pooling"] if st else {"mode": "mean", "normalize": False}
    max_length = (st or {}).get("max_length") or 512
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = transformers.AutoTokenizer.from_pretrained(model_dir)
    model = transformers.AutoModel.from_pretrained(model_dir, torch_dtype=torch.float32).to(device).eval()
    ids, pooled, layers = [], [], []
    for start in range(0, len(texts), BATCH):
        batch = tok(texts[start:start + BATCH], padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt").to(device)
        with torch.no_grad():
            result = model(**batch, output_hidden_states=True)
        mask = batch["attention_mask"].bool()
        pooled.append(_pool(result.last_hidden_state, mask, pooling).cpu().numpy())
        states = torch.stack(result.hidden_states, dim=1)  # (B, L+1, T, H)
        for b in range(mask.shape[0]):
            ids.append(batch["input_ids"][b][mask[b]].cpu().numpy().astype(np.int32))
            if len(layers) < LAYER_TEXTS:
                layers.append(states[b][:, mask[b]].cpu().numpy())  # (L+1, n_b, H)
    meta = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu: {platform.processor() or platform.machine()}",
        "device_kind": "cuda" if device == "cuda" else "cpu",
        "torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
        "source": str(folder.name), "source_sha256": source_hash(folder), "pooling": pooling,
        "max_length": max_length, "texts": len(texts), "layer_texts": len(layers),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    lengths = np.array([len(i) for i in ids], dtype=np.int64)
    np.savez_compressed(
        out, texts=np.array(texts, dtype=object).astype(str), input_ids=np.concatenate(ids),
        lengths=lengths, pooled=np.concatenate(pooled).astype(np.float32),
        hidden_states=np.concatenate(layers, axis=1).astype(np.float32),  # (L+1, sum n_b, H)
        meta=np.array(json.dumps(meta)))
    return meta


def _pool(hidden, mask, pooling: dict):
    import torch

    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling["mode"] == "mean":
        v = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    elif pooling["mode"] == "cls":
        v = hidden[:, 0]
    else:
        v = hidden.masked_fill(~mask.unsqueeze(-1), -1e9).max(1).values
    return torch.nn.functional.normalize(v, dim=1) if pooling.get("normalize") else v


def load_reference(path: str | Path) -> dict:
    """The arrays and metadata of a reference file (no pickle: object arrays are refused)."""
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    for key in ("pooled", "hidden_states"):  # may be stored as float16 to keep a committed file small
        if key in data and data[key].dtype == np.float16:
            data[key] = data[key].astype(np.float32)
    data["meta"] = json.loads(str(data["meta"]))
    return data
