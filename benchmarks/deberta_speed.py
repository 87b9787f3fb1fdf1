"""Latency of a DeBERTa-v3-base-sized random model at 1x128: edgebert int8 against ONNX Runtime int8.

    python -m benchmarks.deberta_speed [--threads 1] [--rounds 5] [--calls 10] [--out benchmarks/.cache/deberta]
                                       [--json benchmarks/results/deberta_speed.json]

The model is transformers' DebertaV2Model with deberta-v3-base's shape and attention settings (hidden 768,
12 layers, 12 heads, intermediate 3072, 256 position buckets, max_relative_positions 512, share_att_key,
norm_rel_ebd layer_norm, no absolute positions, no token types) and random weights (speed does not depend
on them), with a Unigram tokenizer of 8,000 pieces trained on the Lee corpus (the vocabulary size moves
only the embedding lookup). ONNX Runtime's peer: ``torch.onnx.export`` of the same model (the bench's
optimum exporter has no DeBERTa-v2 path tested here), then ``quantize_dynamic(per_channel=True,
weight_type=QInt8)``. Each engine runs in a process of its own (``--engine``); rounds alternate engines
and each round reports the median of ``--calls`` timed calls after one untimed call; the result is the
median over rounds.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIG = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
              max_position_embeddings=512, relative_attention=True, pos_att_type=["p2c", "c2p"],
              position_buckets=256, max_relative_positions=512, share_att_key=True, norm_rel_ebd="layer_norm",
              position_biased_input=False, type_vocab_size=0, layer_norm_eps=1e-7)
TOKENS = 128


def build(out: Path) -> dict:
    """The transformers folder, the edgebert int8 file and the ONNX Runtime int8 model (cached)."""
    paths = {"src": out / "src", "edgebert": out / "deberta-int8.edgebert", "ort": out / "deberta-int8.onnx"}
    if all(p.exists() for p in paths.values()):
        return paths
    import torch
    import transformers
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    from edgebert.converters import convert
    from edgebert.corpora import lee_sentences

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram())
    tok.normalizer, tok.pre_tokenizer = normalizers.NFKC(), pre_tokenizers.Metaspace()
    tok.train_from_iterator(lee_sentences(), trainers.UnigramTrainer(
        vocab_size=8000, special_tokens=["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], unk_token="[UNK]"))
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]",
                                         cls_token="[CLS]", pad_token="[PAD]", mask_token="[MASK]",
                                         model_max_length=512).save_pretrained(paths["src"])
    torch.manual_seed(0)
    model = transformers.DebertaV2Model(transformers.DebertaV2Config(vocab_size=tok.get_vocab_size(),
                                                                     **CONFIG)).eval()
    model.save_pretrained(paths["src"], safe_serialization=True)
    started = time.perf_counter()
    convert(paths["src"], paths["edgebert"], dtype="int8")
    print(f"edgebert int8 conversion: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    raw = out / "raw.onnx"
    ids = torch.ones((1, TOKENS), dtype=torch.long)
    torch.onnx.export(model, (ids, torch.ones_like(ids)), str(raw), input_names=["input_ids", "attention_mask"],
                      output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                      dynamic_axes={n: {0: "batch", 1: "tokens"} for n in ("input_ids", "attention_mask")})
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(raw), str(paths["ort"]), per_channel=True, weight_type=QuantType.QInt8)
    raw.unlink()
    return paths


def _ids(src: Path):
    import numpy as np
    from tokenizers import Tokenizer

    from edgebert.corpora import lee_sentences

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    ids = [i for s in lee_sentences() for i in tok.encode(s, add_special_tokens=False).ids][:TOKENS - 2]
    return np.array([[1, *ids, 2]], dtype=np.int64)


def engine(name: str, paths: dict, threads: int, calls: int) -> float:
    """One round in this process: the median ms of ``calls`` timed calls after one untimed call."""
    import numpy as np

    ids = _ids(paths["src"])
    mask = np.ones_like(ids)
    if name == "edgebert":
        import edgebert

        model = edgebert.load(paths["edgebert"], threads=threads)
        call = lambda: model.run(ids, mask)  # noqa: E731
    else:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        sess = ort.InferenceSession(str(paths["ort"]), opts, providers=["CPUExecutionProvider"])
        call = lambda: sess.run(None, {"input_ids": ids, "attention_mask": mask})  # noqa: E731
    call()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1e3)
        time.sleep(0.03)  # let ONNX Runtime's spinning workers go quiet between calls
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/.cache/deberta"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=10)
    ap.add_argument("--engine", choices=("edgebert", "ort"))
    ap.add_argument("--json", type=Path, help="also write the result here (benchmarks/results/deberta_speed.json)")
    args = ap.parse_args(argv)
    paths = build(args.out)
    if args.engine:  # a worker: one round, its median on stdout
        print(json.dumps(engine(args.engine, paths, args.threads, args.calls)))
        return
    rounds: dict[str, list[float]] = {"edgebert": [], "ort": []}
    load_start = os.getloadavg()[0]
    for _ in range(args.rounds):
        for name in rounds:
            cmd = [sys.executable, "-m", "benchmarks.deberta_speed", "--engine", name, "--out", str(args.out),
                   "--threads", str(args.threads), "--calls", str(args.calls)]
            rounds[name].append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                          text=True).stdout.strip().splitlines()[-1]))
    result = {name: {"median_ms": statistics.median(v), "rounds_ms": v} for name, v in rounds.items()}
    result["ratio_edgebert_over_ort"] = result["edgebert"]["median_ms"] / result["ort"]["median_ms"]
    result.update(shape=f"1x{TOKENS}", threads=args.threads, config=CONFIG, calls_per_round=args.calls,
                  load_average_start_end=[load_start, os.getloadavg()[0]], cpu=platform.processor() or platform.machine(),
                  measured=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
