"""The batch-job flags shared by ``edgebert embed`` and the task commands' ``--output`` mode."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .job import JobSpec, run_job
from .sources import Fields


def add_job_arguments(parser, pairs: bool = False) -> None:
    g = parser.add_argument_group("batch job (with --output)")
    g.add_argument("--text-field", default=None, help="the text column of .jsonl/.csv/.parquet input")
    g.add_argument("--id-field", default=None, help="a column carried to the output as the record's id")
    if pairs:
        g.add_argument("--text-pair-field", default=None, help="the second text of a pair task")
    g.add_argument("--shard-size", type=int, default=4096, help="records committed at a time (default 4096)")
    g.add_argument("--restart", action="store_true", help="discard an unfinished earlier run instead of resuming")
    g.add_argument("--quiet", action="store_true", help="no progress on stderr")
    g.add_argument("--summary", default=None, metavar="FILE", help="write a JSON summary here at the end")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local (default) or ray: Ray Data on the current Ray cluster (pip install edgebert[ray])")


def run_from_args(args, task: str = "embed", options: dict | None = None) -> int:
    spec = JobSpec(model=args.file, input=args.input or "-", output=args.output, task=task,
                   fields=Fields(args.text_field, args.id_field, getattr(args, "text_pair_field", None)),
                   options=options or {}, truncate=not getattr(args, "no_truncate", False),
                   batch_size=getattr(args, "batch_size", 32), threads=args.threads, shard_size=args.shard_size,
                   restart=args.restart, quiet=args.quiet)
    if args.engine == "ray":
        from .ray_engine import run_on_ray

        summary = run_on_ray(spec)
    else:
        summary = run_job(spec)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
    if summary["rejects"]:
        print(f"edgebert: {summary['rejects']:,} records rejected, listed in "
              f"{Path(args.output).with_suffix('.rejects.jsonl')}", file=sys.stderr)
    print(f"wrote {args.output}: {summary['rows']:,} rows from {summary['records']:,} records "
          f"({summary['records_per_s']:,.0f} records/s)", file=sys.stderr)
    return 0
