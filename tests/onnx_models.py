"""Tiny random BERT models exported to ONNX in the tests (not a test module): transformers models with
every parameter perturbed (so no two tensors are equal and exporters cannot deduplicate them), written
by torch.onnx.export's TorchScript-based (``dynamo=False``) or dynamo-based exporter, with the real
MiniLM tokenizer beside them."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from conftest import TOKENIZER_FILES

VOCAB = 30522  # MiniLM's tokenizer
SIZES = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64)
PARAM_NOISE = 0.05  # added to every parameter: LayerNorm gammas/betas and biases are no longer 1/0


def tiny_torch_model(model_class: str = "BertModel", seed: int = 0, **overrides):
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.BertConfig(**{**SIZES, **overrides}, num_labels=3)
    model = getattr(transformers, model_class)(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(PARAM_NOISE * torch.randn_like(p))
    return model


def mean_pooled(bert, normalize: bool = True):
    """A sentence-transformers style module: BertModel, mean pooling over the mask, L2 normalisation."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            m = attention_mask.unsqueeze(-1).expand(h.size()).float()
            pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1) if normalize else pooled

    return MeanPooled().eval()


def export(model, folder: Path, minilm: Path, exporter: str = "torchscript", opset: int = 17,
           token_types: bool = True, tokenizer: bool = True) -> Path:
    """``model`` as ``folder/model.onnx`` with dynamic batch and sequence axes; MiniLM's tokenizer beside."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 9))
    mask = torch.ones_like(ids)
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if token_types else [])
    args = (ids, mask, torch.zeros_like(ids)) if token_types else (ids, mask)

    class Wrapped(torch.nn.Module):  # positional inputs, first output only for transformers models
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, *a):
            out = self.m(*a)  # (input_ids, attention_mask[, token_type_ids]): transformers' order
            return out if isinstance(out, torch.Tensor) else tuple(v for v in out.values())

    path = folder / "model.onnx"
    axes = {n: {0: "batch", 1: "seq"} for n in names}
    if exporter == "torchscript":
        torch.onnx.export(Wrapped().eval(), args, str(path), input_names=names, dynamic_axes=axes, opset_version=opset,
                          dynamo=False)
    else:
        batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=64)
        torch.onnx.export(Wrapped().eval(), args, str(path), input_names=names, dynamo=True,
                          dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),))  # one entry: *a
    if tokenizer:
        for name in TOKENIZER_FILES:
            if (minilm / name).is_file():
                shutil.copy(minilm / name, folder / name)
    return path


def batch(seed: int = 1, rows: int = 3, cols: int = 12, token_types: bool = True) -> dict[str, np.ndarray]:
    """Random ids with [CLS]/[SEP], right padding in later rows, token types 0/1."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 20000, (rows, cols)).astype(np.int64)
    ids[:, 0] = 101
    mask = np.ones_like(ids)
    for r in range(1, rows):
        n = cols - 3 * r
        ids[r, n - 1], ids[r, n:], mask[r, n:] = 102, 0, 0
    out = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        out["token_type_ids"] = (np.arange(cols)[None, :] >= cols // 2).astype(np.int64) * mask
    return out


def torch_outputs(model, b: dict) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        args = [torch.from_numpy(b[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in b]
        out = model(*args)
    values = [out] if isinstance(out, torch.Tensor) else list(out.values())
    return [v.numpy() for v in values]


def encode(tokenizer_file: Path, texts: list[str], max_length: int | None = None) -> dict[str, np.ndarray]:
    """``texts`` as a padded (B, T) int64 batch by the tokenizers library."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.enable_padding()
    if max_length:
        tok.enable_truncation(max_length)
    enc = tok.encode_batch(texts)
    return {k: np.array([getattr(e, a) for e in enc], np.int64) for k, a in
            (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids"))}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def onnx_runtime(path: Path, b: dict, as_written: bool = False) -> list[np.ndarray]:
    """ONNX Runtime's CPU provider running ``path`` on the inputs the graph takes; ``as_written``: only
    basic graph optimizations (with all, ONNX Runtime runs DequantizeLinear -> MatMul as an int8 matmul
    with dynamically quantized activations, not the float math the graph states)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if as_written:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: b[i.name] for i in session.get_inputs()})


def int8_initializers(path: Path) -> tuple[set[bytes], set[float]]:
    """The file's 2-D int8 tensors as (out, in) row bytes (MatMul stores (in, out)), and every float
    scale value, to check that a conversion kept them exactly."""
    import onnx
    from onnx import numpy_helper

    inits = [numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer]
    qs = {np.ascontiguousarray(a.T).tobytes() for a in inits if a.dtype == np.int8 and a.ndim == 2}
    qs |= {np.ascontiguousarray(a).tobytes() for a in inits if a.dtype == np.int8 and a.ndim == 2}  # Gemm (out, in)
    scales = {float(s) for a in inits if a.dtype == np.float32 and a.ndim <= 2 and a.size <= 4096 for s in a.reshape(-1)}
    return qs, scales


def assert_kept_exactly(onnx_path: Path, tensors: dict, layers: int) -> None:
    """Every encoder linear's int8 weight and scales in ``tensors`` (a read .edgebert) are the file's."""
    source_q, source_scales = int8_initializers(onnx_path)
    for i in range(layers):
        for role in ("attn_qkv", "attn_output", "ffn_up", "ffn_down"):
            q, scale = np.asarray(tensors[f"blk.{i}.{role}.weight"]), np.asarray(tensors[f"blk.{i}.{role}.scale"])
            assert q.dtype == np.int8
            fused = np.ascontiguousarray(q).tobytes() in source_q  # ONNX Runtime's packed Q/K/V (Attention)
            parts = [q] if fused or role != "attn_qkv" else np.split(q, 3)
            assert all(np.ascontiguousarray(p).tobytes() in source_q for p in parts), f"{role} {i} was requantized"
            assert {float(s) for s in scale} <= source_scales, f"{role} {i}: scales differ from the file's"


def weight_only_int8(src: Path, dst: Path, form: str = "dequantize", axis: int = 1) -> Path:
    """``src`` with every 2-D MatMul weight stored as int8 and dequantized in the graph, as weight-only
    int8 files do: symmetric scales along ``axis`` of the (in, out) weight (1: per output channel, 0: per
    input row); ``form`` "dequantize" (DequantizeLinear) or "cast_mul" (Cast to float, Mul by scale)."""
    import shutil

    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    inits = {t.name: t for t in model.graph.initializer}
    nodes = []
    for n in model.graph.node:
        w = inits.get(n.input[1]) if n.op_type == "MatMul" and len(n.input) > 1 else None
        if w is not None and len(w.dims) == 2:
            a = numpy_helper.to_array(w)
            scale = (np.abs(a).max(axis=1 - axis, keepdims=True) / 127).astype(np.float32)
            q = np.clip(np.rint(a / scale), -127, 127).astype(np.int8)
            base = n.input[1]
            model.graph.initializer.extend([numpy_helper.from_array(q, base + "_q"),
                                            numpy_helper.from_array(scale if form == "cast_mul" else scale.reshape(-1),
                                                                    base + "_s")])
            if form == "dequantize":
                nodes.append(helper.make_node("DequantizeLinear", [base + "_q", base + "_s"], [base + "_w"], axis=axis))
            else:
                nodes.append(helper.make_node("Cast", [base + "_q"], [base + "_f"], to=onnx.TensorProto.FLOAT))
                nodes.append(helper.make_node("Mul", [base + "_f", base + "_s"], [base + "_w"]))
            n.input[1] = base + "_w"
            model.graph.initializer.remove(w)
        nodes.append(n)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst))
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (src.parent / name).is_file():
            shutil.copy(src.parent / name, dst.parent / name)
    return dst
