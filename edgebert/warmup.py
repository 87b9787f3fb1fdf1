"""Compile every kernel ahead of time (``edgebert warmup``) and say so once on a first run.

Numba caches compiled kernels on disk (``cache=True``), keyed on the CPU; the
first run on a new machine pays the compilation. Warm-up compiles the int8
linear kernels of the path in use for the signatures the ISA table declares
(``runtime/kernels/precompile.py``), then runs a tiny random model through the
same code path (read-only memory-mapped weights, the same dtypes) so the other
kernels' signatures land in the cache too: a long batch (parallel GEMMs, the
fused feed-forward panels) and short texts (serial GEMMs, the unfused steps),
with one int16-activation down layer (the fused two-pass block) and one int16
up layer (the unfused two-pass linear + GELU). It calls the int8 kernels with
exactly the declared types (tests/runtime/test_isa.py), so for those it
finds everything compiled already.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import __version__


def _marker() -> Path:
    import llvmlite.binding as llvm

    from .runtime.startup import import_numba

    numba = import_numba()  # the edgebert way (no scipy probes): this may be the process's first import

    from .settings import cache_root

    folder = cache_root()
    return folder / f"compiled-{llvm.get_host_cpu_name()}-numba{numba.__version__}-edgebert{__version__}"


def announce_first_compile() -> None:
    """Print one line before the first compilation on this machine (and never again)."""
    try:
        marker = _marker()
        if marker.exists():
            return
        print("edgebert: compiling kernels for this CPU (first run only; `edgebert warmup` does it ahead of time)",
              file=sys.stderr, flush=True)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:
        pass  # a read-only home must not break inference


def _tiny_model_file(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    from .converters.calibrate import QuantPlan
    from .converters.pipeline import metadata, quantize_spec
    from .converters.spec import EncoderConfig, ModelSpec
    from .format import write_model

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "c", "d"])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    config = EncoderConfig(vocab_size=len(vocab), hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                           max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12)
    spec = ModelSpec(source_architecture="BertModel", config=config, tokenizer_json=tok.to_str(), max_length=64,
                     pad_token_id=0)
    rng = np.random.default_rng(0)
    for name, slot in spec.slots.items():
        spec[name] = rng.standard_normal(slot.shape).astype(np.float32) * 0.1
    plan = QuantPlan(alpha=0.0, texts=0, source="warm-up")
    plan.higher = {prefix: {"activations": "int16", "why": "warm-up: the two-pass kernels"}
                   for prefix in ("blk.0.ffn_down", "blk.1.ffn_up")}
    # float32 outlier channels (outlier_add), off the feed-forward blocks that fuse on AMX
    plan.outliers = {"blk.0.attn_qkv": np.array([3, 17, 30, 41, 60], np.int32), "blk.1.attn_output": np.array([9], np.int32)}
    path = folder / "warmup.edgebert"
    tensors, report = quantize_spec(spec, "int8", plan)
    write_model(path, tensors, metadata(spec, "int8", report, plan))
    return path


def _run_tiny_model() -> None:
    from . import load

    with tempfile.TemporaryDirectory() as tmp:
        model = load(_tiny_model_file(Path(tmp)), backend="numba")
        model.embed(["a b c d " * 15] * 12, batch_size=12)  # 744 rows: parallel GEMMs, fused panels
        model.embed(["a b c d " * 3, "a", "b c"], batch_size=2)  # a few rows: serial GEMMs, unfused steps


def warmup(verbose: bool = True, native: bool = True) -> float:
    """Compile (or load from the disk cache) every encoder kernel, then build the native kernel
    library from them (``native``; where that fails, say why: the JIT path still works);
    returns the seconds it took."""
    from .runtime.kernels import cpu, precompile

    start = time.perf_counter()
    for job in precompile.jobs((cpu.kernel_path(),)):
        precompile.compile_job(job)
    _run_tiny_model()
    if native:
        from .runtime.native import library

        try:
            file = library.build()
            if verbose:
                print(f"edgebert: native kernel library {file}")
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            print(f"edgebert: no native kernel library ({str(exc).strip().splitlines()[0]}); "
                  "models run on the JIT kernels", file=sys.stderr)
    seconds = time.perf_counter() - start
    try:
        _marker().parent.mkdir(parents=True, exist_ok=True)
        _marker().touch()
    except OSError:
        pass
    if verbose:
        print(f"edgebert: kernels ready in {seconds:.1f} s (cached on disk for later processes)")
    return seconds
