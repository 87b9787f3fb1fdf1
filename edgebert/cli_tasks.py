"""The task commands (classify, zero-shot, ner, qa, fill-mask, summarize): JSON lines out.

A command names its pipeline and how its texts become the pipeline's inputs; its
option flags come from the pipeline's declared options (``pipelines/options.py``),
so a new option shows up here without an edit.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Callable

from .batch.command import add_job_arguments, run_from_args
from .errors import InputError
from .pipelines import pipeline_class

TEXTS_HELP = "texts (default: one per line from --input or stdin)"


def _texts(args, texts: list[str]) -> list:
    return texts


def _pairs(args, texts: list[str]) -> list:
    if not args.pairs:
        return texts
    split = [t.split("\t", 1) for t in texts]
    bad = [i for i, parts in enumerate(split) if len(parts) != 2]
    if bad:
        raise InputError(f"text {bad[0]} has no TAB between the pair's two texts")
    return [{"text": a, "text_pair": b} for a, b in split]


def _ranking(args, documents: list[str]) -> list:
    return [{"query": args.query, "documents": documents}]


def _questions(args, contexts: list[str]) -> list:
    return [{"question": args.question, "context": c} for c in contexts]


@dataclass(frozen=True)
class Command:
    name: str
    task: str
    help: str
    inputs: Callable = _texts  # (args, texts) -> the pipeline's inputs
    texts_help: str = TEXTS_HELP
    whole: bool = False  # all of --input is one text (a document), not one text a line
    defaults: dict = field(default_factory=dict)  # where the command's default differs from the API's
    aliases: dict = field(default_factory=dict)  # option name -> older flags kept working
    arguments: tuple = ()  # the command's own arguments: (flags, argparse kwargs)
    batch: bool = True  # --output runs a resumable batch job over --input (edgebert/batch/)


COMMANDS = (
    Command("classify", "text-classification", "text classification (pairs: TEXT<tab>PAIR with --pairs)",
            _pairs, defaults={"top_k": 1},
            arguments=((("--pairs",), {"action": "store_true",
                                       "help": "each text is 'first<TAB>second' (e.g. NLI)"}),)),
    Command("zero-shot", "zero-shot-classification", "zero-shot classification with an NLI model"),
    Command("ner", "token-classification", "token classification with character offsets",
            defaults={"aggregation_strategy": "simple"}, aliases={"aggregation_strategy": ("--aggregation",)}),
    Command("qa", "question-answering", "extractive question answering", _questions,
            texts_help="contexts (default: from --input or stdin)", batch=False,
            arguments=((("--question",), {"required": True, "help": "the question asked of every context"}),)),
    Command("fill-mask", "fill-mask", "fill [MASK] tokens"),
    Command("rerank", "text-ranking", "rank documents against a query with a cross-encoder", _ranking,
            texts_help="documents (default: one per line from --input or stdin)", batch=False,
            arguments=((("--query",), {"required": True, "help": "the query every document is scored against"}),)),
    Command("summarize", "summarization", "extractive summary of each document", whole=True, batch=False,
            texts_help="documents (default: the whole of --input or stdin is one document)"),
)


def add_task_parsers(sub) -> None:
    for command in COMMANDS:
        t = sub.add_parser(command.name, help=command.help)
        t.add_argument("file", help=".edgebert model file")
        t.add_argument("texts", nargs="*", help=command.texts_help)
        t.add_argument("--input", default=None, help="text file, one text per line ('-' = stdin)")
        t.add_argument("--threads", type=int, default=None)
        for flags, kwargs in command.arguments:
            t.add_argument(*flags, **kwargs)
        for option in pipeline_class(command.task).options:
            if option.cli:
                option.add_to(t, command.defaults.get(option.name, option.default),
                              command.aliases.get(option.name, ()))
        if command.batch:
            t.add_argument("--output", default=None, help="write results to a .parquet or .jsonl file as a "
                           "resumable batch job over --input (instead of JSON lines on stdout)")
            add_job_arguments(t, pairs=True)
        t.set_defaults(func=lambda args, command=command: run_task(command, args))


def run_task(command: Command, args) -> int:
    from . import load, pipeline
    from .cli import read_lines

    options = {o.name: getattr(args, o.name) for o in pipeline_class(command.task).options
               if o.cli and getattr(args, o.name) is not None}
    if getattr(args, "output", None):
        if args.texts or getattr(args, "pairs", False):
            raise InputError("with --output, records come from --input (pairs: --text-pair-field)")
        return run_from_args(args, command.task, options)
    if args.texts:
        texts = list(args.texts)
    elif command.whole:
        texts = ["\n".join(read_lines(args.input or "-"))]
    else:
        texts = [t for t in read_lines(args.input or "-") if t.strip()]
    pipe = pipeline(command.task, model=load(args.file, threads=args.threads))
    for result in pipe(command.inputs(args, texts), **options):
        print(json.dumps(result, ensure_ascii=False))
    return 0
