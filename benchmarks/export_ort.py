"""ONNX Runtime models for the comparison: export, optimize (fp32), quantize (int8).

    python -m benchmarks.export_ort [--rebuild]

Export is optimum's ``main_export`` (task feature-extraction), the way
Hugging Face users make ONNX models; the bench extra pins versions that work
together (optimum-onnx 0.1.0 needs transformers < 4.58). Without it the build
stops with an error: there is no fallback exporter, since a silently different
peer model is not the comparison the report claims. The manifest records the
exporter with its versions and the fused operator counts, and a cached model
made by anything else is rebuilt.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

EXPORTER = "optimum.exporters.onnx.main_export"


def build(model_dir: Path, out_dir: Path, rebuild: bool = False) -> dict:
    """Paths of the optimized fp32 and the int8 models, and how they were made (cached)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    fp32, int8 = out_dir / "model-opt-fp32.onnx", out_dir / "model-opt-int8.onnx"
    if not rebuild and manifest_path.exists() and fp32.exists() and int8.exists():
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("exporter", "").startswith(EXPORTER):
            return manifest
    shutil.rmtree(out_dir, ignore_errors=True)
    raw_dir = out_dir / "raw"
    exporter = export(Path(model_dir), raw_dir)
    fused = optimize(Path(model_dir), raw_dir / "model.onnx", fp32)
    quantize(fp32, int8)
    shutil.rmtree(raw_dir)
    manifest = {"fp32": str(fp32), "int8": str(int8), "exporter": exporter, "fused_operators": fused,
                "optimizer": "onnxruntime.transformers.optimizer.optimize_model(model_type='bert')",
                "quantizer": "onnxruntime.quantization.quantize_dynamic(per_channel=True, weight_type=QInt8)"}
    manifest_path.write_text(json.dumps(manifest, indent=1))
    return manifest


def export(model_dir: Path, raw_dir: Path) -> str:
    """optimum's ONNX export of the model's last hidden state; returns what made it, with versions."""
    from importlib.metadata import version

    try:
        from optimum.exporters.onnx import main_export
    except Exception as e:  # absent, or installed beside a transformers it does not support
        raise SystemExit(f"the ONNX Runtime peer is exported with optimum, which cannot be imported here "
                         f"({type(e).__name__}: {e}); install the pinned versions: pip install -e '.[bench]'") from e
    main_export(str(model_dir), output=str(raw_dir), task="feature-extraction",
                library_name="transformers", local_files_only=True)
    versions = ", ".join(f"{p} {version(p)}" for p in ("optimum-onnx", "optimum", "transformers", "torch"))
    return f"{EXPORTER} ({versions})"


def optimize(model_dir: Path, raw: Path, fp32: Path) -> dict:
    from onnxruntime.transformers.optimizer import optimize_model

    config = json.loads((model_dir / "config.json").read_text())
    opt = optimize_model(str(raw), model_type="bert", num_heads=config["num_attention_heads"],
                         hidden_size=config["hidden_size"])
    opt.save_model_to_file(str(fp32))
    return {k: v for k, v in opt.get_fused_operator_statistics().items() if v}


def quantize(fp32: Path, int8: Path) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Shape inference cannot type the outputs of the fused contrib ops (Attention,
    # SkipLayerNormalization); they are float32, which ORT's error message suggests saying.
    quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": TensorProto.FLOAT})


if __name__ == "__main__":
    import argparse

    from benchmarks.prepare import CACHE, model_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rebuild", action="store_true")
    print(json.dumps(build(model_dir(), CACHE / "ort", parser.parse_args().rebuild), indent=1))
