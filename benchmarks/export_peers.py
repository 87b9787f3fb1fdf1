"""OpenVINO and CTranslate2 models for the comparison, built once into the cache.

    python -m benchmarks.export_peers [--rebuild]

OpenVINO: optimum's ONNX export of all-MiniLM-L6-v2 (the export the ONNX
Runtime peer starts from, before ORT's fusions, which OpenVINO cannot read),
converted by ``openvino.convert_model`` and saved without fp16 compression:
  fp32     : the converted model as is
  int8     : NNCF post-training quantization (``nncf.quantize``, model type
             TRANSFORMER, preset MIXED), calibrated on the first 300 Lee
             sentences, one sentence per sample
  int8_wo  : NNCF weights-only int8 (``nncf.compress_weights``, its default mode)
CTranslate2: its Transformers converter (BertModel) with int8 quantization.
A manifest beside the files records how each was made, with versions; a
missing file or a manifest of another recipe rebuilds everything.
"""
from __future__ import annotations

import json
import shutil
from importlib.metadata import version
from pathlib import Path

CALIBRATION_SENTENCES = 300  # the recipe: 300 Lee sentences
RECIPE = 1  # bump when the recipe below changes: cached files of an older one are rebuilt
FILES = {"openvino_fp32": "openvino/fp32.xml", "openvino_int8": "openvino/int8.xml",
         "openvino_int8_wo": "openvino/int8_wo.xml", "ctranslate2_int8": "ct2-int8/model.bin"}


def build(model_dir: Path, out_dir: Path, rebuild: bool = False) -> dict:
    """{engine key: model path, "manifest": how they were made} (cached in ``out_dir``)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    paths = {key: out_dir / rel for key, rel in FILES.items()}
    if not rebuild and manifest_path.exists() and all(p.exists() for p in paths.values()):
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("recipe") == RECIPE:
            return _result(paths, manifest)
    _require("openvino", "nncf", "ctranslate2")
    shutil.rmtree(out_dir, ignore_errors=True)
    manifest = {"recipe": RECIPE}
    manifest.update(build_openvino(Path(model_dir), out_dir / "openvino"))
    manifest["ctranslate2_int8"] = build_ctranslate2(Path(model_dir), out_dir / "ct2-int8")
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return _result(paths, manifest)


def _require(*packages: str) -> None:
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise SystemExit(f"the OpenVINO / CTranslate2 peers need {', '.join(missing)}, not installed here: "
                         f"pip install -e '.[bench]' (or leave those engines out of --engines)")


def _result(paths: dict, manifest: dict) -> dict:
    return {**{k: str(p) for k, p in paths.items()}, "manifest": manifest}


def build_openvino(model_dir: Path, out: Path) -> dict:
    import nncf
    import openvino as ov

    from benchmarks.export_ort import export

    raw = out / "onnx"
    exporter = export(model_dir, raw)
    model = ov.convert_model(raw / "model.onnx")
    ov.save_model(model, out / "fp32.xml", compress_to_fp16=False)
    texts = calibration_texts()
    dataset = nncf.Dataset(calibration_inputs(model_dir, texts))
    int8 = nncf.quantize(ov.convert_model(raw / "model.onnx"), dataset, model_type=nncf.ModelType.TRANSFORMER,
                         preset=nncf.QuantizationPreset.MIXED, subset_size=len(texts))
    ov.save_model(int8, out / "int8.xml", compress_to_fp16=False)
    wo = nncf.compress_weights(ov.convert_model(raw / "model.onnx"))
    ov.save_model(wo, out / "int8_wo.xml", compress_to_fp16=False)
    shutil.rmtree(raw)
    made = f"{exporter}; openvino.convert_model (openvino {version('openvino')})"
    return {"openvino_fp32": made,
            "openvino_int8": f"{made}; nncf.quantize(model_type=TRANSFORMER, preset=MIXED, "
                             f"{len(texts)} Lee sentences) (nncf {version('nncf')})",
            "openvino_int8_wo": f"{made}; nncf.compress_weights() default mode (INT8_ASYM) (nncf {version('nncf')})"}


def calibration_texts() -> list[str]:
    from edgebert.corpora import lee_sentences

    return lee_sentences()[:CALIBRATION_SENTENCES]


def calibration_inputs(model_dir: Path, texts: list[str]) -> list[dict]:
    """One feed per sentence, (1, tokens) int64 arrays named as the ONNX export's inputs."""
    import numpy as np
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(json.loads((Path(model_dir) / "sentence_bert_config.json").read_text())["max_seq_length"])
    feeds = []
    for enc in tok.encode_batch(texts):
        ids = np.array([enc.ids], dtype=np.int64)
        feeds.append({"input_ids": ids, "attention_mask": np.ones_like(ids),
                      "token_type_ids": np.array([enc.type_ids], dtype=np.int64)})
    return feeds


def build_ctranslate2(model_dir: Path, out: Path) -> str:
    from ctranslate2.converters import TransformersConverter

    TransformersConverter(str(model_dir)).convert(str(out), quantization="int8", force=True)
    return (f"ctranslate2.converters.TransformersConverter(quantization='int8') (ctranslate2 "
            f"{version('ctranslate2')}, transformers {version('transformers')})")


if __name__ == "__main__":
    import argparse

    from benchmarks.prepare import CACHE, model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    print(json.dumps(build(model_dir(), CACHE / "peers", parser.parse_args().rebuild), indent=1))
