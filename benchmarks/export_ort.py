"""ONNX Runtime models for the comparison: export, optimize (fp32), quantize (int8).

    python -m benchmarks.export_ort [--rebuild]

Export is optimum's ``main_export`` (task feature-extraction). optimum-onnx
0.1.0 supports only transformers < 4.58; where it cannot be imported the
export falls back to ``torch.onnx.export`` with the same inputs, output and
dynamic axes, eager attention (what optimum traces) and opset 18. Either
export gives the same graph after ONNX Runtime's BERT optimizer (6 Attention,
1 EmbedLayerNormalization, 12 SkipLayerNormalization, 6 BiasGelu); the fused
operator counts are kept in the manifest so a reader can check.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def build(model_dir: Path, out_dir: Path, rebuild: bool = False) -> dict:
    """Paths of the optimized fp32 and the int8 models, and how they were made (cached)."""
    out_dir = Path(out_dir)
    manifest_path = out_dir / "manifest.json"
    fp32, int8 = out_dir / "model-opt-fp32.onnx", out_dir / "model-opt-int8.onnx"
    if not rebuild and manifest_path.exists() and fp32.exists() and int8.exists():
        return json.loads(manifest_path.read_text())
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
    try:
        from optimum.exporters.onnx import main_export
    except Exception as e:  # absent, or built for another transformers major version
        reason = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}" if str(e) else type(e).__name__
        _torch_export(model_dir, raw_dir / "model.onnx")
        return f"torch.onnx.export (optimum unavailable: {reason})"
    main_export(str(model_dir), output=str(raw_dir), task="feature-extraction",
                library_name="transformers", local_files_only=True)
    return "optimum.exporters.onnx.main_export"


def _torch_export(model_dir: Path, path: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(model_dir, local_files_only=True, attn_implementation="eager").eval()

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    ids = torch.full((2, 8), 1000, dtype=torch.long)
    axes = {name: {0: "batch_size", 1: "sequence_length"} for name in INPUTS + ("last_hidden_state",)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(Hidden(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(path),
                          input_names=list(INPUTS), output_names=["last_hidden_state"],
                          dynamic_axes=axes, opset_version=18, dynamo=False)


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
