"""The ``edgebert`` command: convert, info, embed, demo; the task commands live in cli_tasks.py."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .batch.command import add_job_arguments, run_from_args
from .cli_tasks import add_task_parsers
from .errors import EdgebertError, InputError
from .server import add_serve_parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    # Task commands take texts before or after their options (argparse stops a
    # positional list at the first option).
    if extra and hasattr(args, "texts") and not any(e.startswith("-") for e in extra):
        args.texts += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except EdgebertError as e:
        print(f"edgebert: error: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"edgebert: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a batch job has said how to resume
        return 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgebert", description="Quantized BERT inference on CPUs.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert a Hugging Face model folder to a .edgebert file")
    c.add_argument("src", help="model folder (config.json, model.safetensors, tokenizer.json) or a .onnx file")
    c.add_argument("--tokenizer", default=None, metavar="DIR",
                   help="for a .onnx file: folder with tokenizer.json or vocab.txt (default: beside the file)")
    c.add_argument("-o", "--output", required=True, help="output .edgebert file")
    c.add_argument("--dtype", choices=["int8", "float32"], default="int8",
                   help="int8 (default) or float32 (unquantized, the FP32 baseline)")
    c.add_argument("--allow-pickle", action="store_true",
                   help="allow loading pytorch_model.bin (pickle can run code: only for trusted files)")
    c.add_argument("--calibrate", default=None, metavar="TEXTS",
                   help="calibration text, one per line (default: a built-in set of English sentences)")
    c.add_argument("--smooth-alpha", type=float, default=0.5,
                   help="SmoothQuant migration strength 0..1 (0 turns smoothing off; default 0.5)")
    c.add_argument("--keep", type=int, default=1, metavar="N",
                   help="run the N most sensitive linear layers with higher-precision activations (default 1)")
    c.add_argument("--keep-as", choices=["int16", "float32"], default="int16",
                   help="their precision: int16 (two int8 passes, deterministic; default) or float32 (BLAS)")
    c.add_argument("--outliers", type=int, default=16, metavar="N",
                   help="per linear layer, up to N input channels whose range dwarfs the others' run in float32 "
                        "instead of int8 (0 turns it off; default 16)")
    c.set_defaults(func=_convert)

    r = sub.add_parser("reference", help="FP32 reference outputs of the original model (needs torch)")
    r.add_argument("src", help="original model folder")
    r.add_argument("--input", required=True, help="texts, one per line")
    r.add_argument("-o", "--output", required=True, help="output .npz")
    r.set_defaults(func=_reference)

    v = sub.add_parser("verify", help="compare a .edgebert file with an FP32 reference (.npz)")
    v.add_argument("file")
    v.add_argument("--reference", required=True)
    v.add_argument("--json", default=None, metavar="OUT", help="also write the report as JSON")
    v.set_defaults(func=_verify)

    i = sub.add_parser("info", help="describe a .edgebert file")
    i.add_argument("file")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_info)

    e = sub.add_parser("embed", help="embed a corpus (.txt/.jsonl/.csv/.parquet or a folder), resumably")
    e.add_argument("file")
    e.add_argument("--input", default="-", help="input file or folder (default: stdin, one text per line)")
    e.add_argument("--output", required=True, help="output .parquet, .jsonl, or .npy (n, dim) for .txt input")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--threads", type=int, default=None)
    e.add_argument("--no-truncate", action="store_true", help="reject texts longer than the model's maximum")
    add_job_arguments(e)
    e.set_defaults(func=run_from_args)

    w = sub.add_parser("warmup", help="compile every kernel for this CPU now (cached on disk)")
    w.set_defaults(func=lambda args: _warmup())

    d = sub.add_parser("demo", help="convert the packaged all-MiniLM-L6-v2, embed, search, compare with FP32")
    d.add_argument("--cache", default=None, help="cache folder (default: $EDGEBERT_CACHE or ~/.cache/edgebert)")
    d.add_argument("--threads", type=int, default=None)
    d.set_defaults(func=_demo)
    add_task_parsers(sub)
    add_serve_parser(sub)
    from .bench import add_bench_parser  # edgebert bench MODEL (edgebert/bench.py)
    add_bench_parser(sub)
    from .onnx_export import add_export_parser  # edgebert export MODEL -o model.onnx (edgebert/onnx_export.py)
    add_export_parser(sub)
    return p


def _convert(args) -> int:
    from .converters import convert

    report = convert(args.src, args.output, dtype=args.dtype, allow_pickle=args.allow_pickle,
                     calibrate=args.calibrate, smooth_alpha=args.smooth_alpha, keep=args.keep,
                     keep_as=args.keep_as, tokenizer=args.tokenizer, outliers=args.outliers)
    size = os.path.getsize(args.output)
    print(f"wrote {args.output} ({size / 2**20:.1f} MiB, {args.dtype})")
    if report:
        name, worst = max(report.items(), key=lambda kv: kv[1]["max_rel"])
        print(f"quantized {len(report)} tensors; worst relative error {worst['max_rel']:.4f} in {name}")
    return 0


def _info(args) -> int:
    from .info import file_info, format_info

    info = file_info(args.file)  # only what the reader verified (edgebert/description.py)
    print(json.dumps(info, indent=2) if args.json else "\n".join(format_info(info, args.file)))
    return 0


def read_lines(source: str) -> list[str]:
    """One text per line, strict UTF-8; an error names the line."""
    raw = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
    texts = []
    for number, line in enumerate(raw.splitlines(), start=1):
        try:
            texts.append(line.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"{source}: line {number} is not valid UTF-8 (byte {e.start}: {e.reason})") from None
    return texts


def _reference(args) -> int:
    from .reference import make_reference

    meta = make_reference(args.src, read_lines(args.input), args.output)
    print(f"wrote {args.output}: {meta['texts']} texts on {meta['device']} (torch {meta['torch']})")
    return 0


def _verify(args) -> int:
    from . import load
    from .verify import format_report, verify

    report = verify(load(args.file), args.reference)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


def _warmup() -> int:
    from .warmup import warmup

    warmup()
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    return run_demo(cache=args.cache, threads=args.threads)


if __name__ == "__main__":
    sys.exit(main())
