"""Header-mutation corpus (issue 19): typed edits of every metadata object of a valid file.

The payload checksum covers tensor bytes only, so anyone can edit a header and
keep the file valid. ``mutants(path, rng)`` yields (kind, label, metadata,
shapes): the file's metadata (JSON values parsed) with one or two typed edits,
and tensor shapes to write instead of the real ones (same bytes, another
shape). ``oracle`` says whether a loaded mutant's description matches its
content, read here independently of edgebert/content.py: from the standard
tensor names, the graph's attrs and what embed/run return.

Run ``python tests/fuzz_header.py [--minilm N]`` for the outcome counts by kind
(tests/fuzz_worker.py runs each mutant in a limited child process).
"""
from __future__ import annotations

import copy
import json
import math
import random
from pathlib import Path

import numpy as np

from edgebert import names
from edgebert.format import read_model, write_model

LEGACY = Path(__file__).parent / "data" / "legacy"
BASES = {  # small random-weight files written by the converter (tests/data/make_legacy.py)
    "bert_int8": LEGACY / "era_d.BertModel.int8.edgebert",
    "bert_fp32": LEGACY / "era_d.BertModel.float32.edgebert",
    "mlm_int8": LEGACY / "era_c.BertForMaskedLM.int8.edgebert",
    "cls_int8": LEGACY / "era_a.BertForSequenceClassification.int8.edgebert",
}
PLAIN = (names.TOKENIZER, names.ARCHITECTURE, names.SOURCE_ARCHITECTURE)
RESERVED = (names.FORMAT, names.VERSION, names.CHECKSUM)
# typed junk every field is tried with, besides the values that fit it
JUNK = [None, True, False, 0, -1, 1, 7, 2**63 - 1, 1.5, -0.0, 1e308, "", "0", "12", "cls", [], [1], {}, {"a": 1}]
SCHEMES = ["int8_symmetric_per_channel", "int8_symmetric_per_row", "uint8_asymmetric_per_token_dynamic",
           "int8_symmetric_per_token_dynamic", "float32", "int4", "float16", "int8_asymmetric_per_tensor"]


def read_base(path: Path) -> tuple[dict, dict]:
    f = read_model(path)
    meta = {k: (v if k in PLAIN else f.json(k)) for k, v in f.metadata.items() if k not in RESERVED}
    return meta, {k: tuple(v.shape) for k, v in f.tensors.items()}


def write_mutant(path: Path, base: Path, meta: dict, shapes: dict) -> None:
    f = read_model(base)
    tensors = {k: np.asarray(v).reshape(shapes.get(k, v.shape)) for k, v in f.tensors.items()}
    write_model(path, tensors, meta)


# ---------------------------------------------------------------- mutations


def _values_for(value) -> list:
    """Values of the same JSON type near ``value``, then the typed junk."""
    near = []
    if isinstance(value, bool):
        near = [not value]
    elif isinstance(value, int):
        near = [value + 1, value - 1, value * 2, max(value // 2, 1), 0]
    elif isinstance(value, float):
        near = [value * 10, 1e-5, 0.0, -value, 7.0]
    elif isinstance(value, str):
        near = [value.upper(), value + "x", "gelu", "tanh", "relu", "post", "pre", "gated", "plain", "column",
                "real_tokens", "absolute", "rotary", *SCHEMES]
    return near + JUNK


def _field_edits(rng: random.Random, key: str, obj: dict, kind: str, n: int):
    """Set, drop or add one field of a JSON object."""
    fields = sorted(obj)
    for _ in range(n):
        new = copy.deepcopy(obj)
        roll = rng.random()
        if roll < 0.1 and fields:
            field = rng.choice(fields)
            del new[field]
            yield kind, f"{key}: drop {field}", new
        elif roll < 0.15:
            new["unknown_field"] = rng.choice(JUNK)
            yield kind, f"{key}: add unknown_field", new
        elif fields:
            field = rng.choice(fields)
            new[field] = rng.choice(_values_for(obj[field]))
            yield kind, f"{key}: {field}={json.dumps(new[field])[:40]}", new


def _graph_edits(rng: random.Random, graph: dict, n: int):
    nodes = graph["nodes"]
    values = sorted({v for node in nodes for v in node["inputs"] + node["outputs"]} | set(graph["inputs"]))
    for _ in range(n):
        g = copy.deepcopy(graph)
        i = rng.randrange(len(nodes))
        node, roll = g["nodes"][i], rng.random()
        if roll < 0.35:  # attrs
            attrs = node["attrs"]
            key = rng.choice(sorted(attrs) + ["eps", "num_heads", "activation", "activations", "position_offset"])
            attrs[key] = rng.choice(_values_for(attrs.get(key, 1e-12)) + ["int16", "float32", "int8", "gelu", 2, 4])
            yield "graph_attrs", f"node {i} {node['op']}: {key}={json.dumps(attrs[key])[:30]}", g
        elif roll < 0.55:  # params swapped between two nodes of the same op
            same = [j for j, m in enumerate(g["nodes"]) if m["op"] == node["op"] and j != i and m["params"]]
            if not same or not node["params"]:
                continue
            j = rng.choice(same)
            node["params"], g["nodes"][j]["params"] = g["nodes"][j]["params"], node["params"]
            yield "params_swap", f"nodes {i}<->{j} {node['op']}", g
        elif roll < 0.85:  # wiring
            what = rng.choice(["input", "output", "drop", "dup", "swap_order", "graph_output", "op"])
            if what == "input" and node["inputs"]:
                node["inputs"][rng.randrange(len(node["inputs"]))] = rng.choice(values)
            elif what == "output":
                node["outputs"][0] = rng.choice(values + ["fresh"])
            elif what == "drop":
                del g["nodes"][i]
            elif what == "dup":
                g["nodes"].insert(i, copy.deepcopy(node))
            elif what == "swap_order":
                j = rng.randrange(len(nodes))
                g["nodes"][i], g["nodes"][j] = g["nodes"][j], g["nodes"][i]
            elif what == "graph_output":
                g["outputs"] = rng.choice([[], ["h1"], g["outputs"] + [rng.choice(values)], g["outputs"][::-1]])
            else:
                node["op"] = rng.choice(["linear", "norm", "geglu", "first_token", "attention", "tied_linear"])
            yield "graph_wiring", f"node {i} {node['op']}: {what}", g
        else:  # the node's params point at other tensors
            if not node["params"]:
                continue
            key = rng.choice(sorted(node["params"]))
            node["params"][key] = rng.choice(["token_embd", "blk.0.attn_qkv", "blk.1.ffn_up", "embd_norm",
                                              "blk.0.attn_norm", "position_embd", "missing", "cls", "pooler"])
            yield "graph_params", f"node {i} {node['op']}: {key}={node['params'][key]}", g


def _reshapes(rng: random.Random, shapes: dict, n: int):
    """Another shape with the same number of elements: the bytes and checksum stay valid."""
    names_ = sorted(shapes)
    for _ in range(n):
        name = rng.choice(names_)
        total = math.prod(shapes[name])
        divisors = [d for d in range(1, min(total, 4096) + 1) if total % d == 0]
        new = rng.choice([(total,), (total // (d := rng.choice(divisors)), d), tuple(reversed(shapes[name])),
                          (1, total), (total // (d := rng.choice(divisors)), 1, d)])
        if new != shapes[name]:
            yield "tensor_shape", f"{name} {shapes[name]}->{new}", {name: new}


def _tokenizer_edits(rng: random.Random, tok: str, n: int):
    base = json.loads(tok)
    for _ in range(n):
        t, roll = copy.deepcopy(base), rng.random()
        if roll < 0.4 and isinstance(t.get("padding"), dict):
            t["padding"]["pad_id"] = rng.choice([1, 5, -1, 10**9, "0", None])
            label = f"padding pad_id={t['padding']['pad_id']}"
        elif roll < 0.6:
            t["padding"] = None
            label = "padding null"
        elif roll < 0.8:
            t["truncation"] = {"max_length": rng.choice([1, 3, 10**6]), "strategy": "LongestFirst", "stride": 0}
            label = "truncation"
        else:
            token = rng.choice(sorted(t["model"]["vocab"]))
            t["model"]["vocab"][token] = rng.choice([0, 5, 10**6, -1])
            label = f"vocab {token!r}"
        yield "tokenizer", label, json.dumps(t)


def mutants(path: Path, rng: random.Random, per_object: int = 40):
    """(kind, label, metadata, shapes) for typed edits of each metadata object of ``path``."""
    meta, shapes = read_base(path)

    def with_(key, value):
        out = dict(meta)
        if value is _DROP:
            out.pop(key, None)
        else:
            out[key] = value
        return out

    objects = [(names.CONFIG, "config"), (names.QUANTIZATION, "quantization"), (names.POOLING, "pooling"),
               (names.TOKENIZER_CONFIG, "tokenizer_config"), (names.HEAD, "head"), (names.REPORT, "report"),
               (names.CALIBRATION, "calibration")]
    for key, kind in objects:
        if key in meta:
            for kind_, label, value in _field_edits(rng, key, meta[key], kind, per_object):
                yield kind_, label, with_(key, value), {}
            yield kind, f"{key}: drop", with_(key, _DROP), {}
            for junk in (None, 1, "x", [], "{}"):
                yield kind, f"{key}: {junk!r}", with_(key, junk), {}
    if names.HEAD not in meta:
        for task in ("masked-lm", "sequence-classification", "question-answering", "unknown"):
            yield "head", f"head added: {task}", with_(names.HEAD, {"task": task}), {}
    for kind_, label, graph in _graph_edits(rng, meta[names.GRAPH], 3 * per_object):
        yield kind_, label, with_(names.GRAPH, graph), {}
    for kind_, label, new_shapes in _reshapes(rng, shapes, per_object):
        yield kind_, label, meta, new_shapes
    for kind_, label, tok in _tokenizer_edits(rng, meta[names.TOKENIZER], per_object // 2):
        yield kind_, label, with_(names.TOKENIZER, tok), {}
    for value in ("", "x" * 500, "bert\n", "roberta", "\x00"):
        yield "provenance", f"architecture={value[:10]!r}", with_(names.ARCHITECTURE, value), {}
    for _ in range(per_object // 2):  # two edits at once, of different objects
        key_a, key_b = rng.sample([k for k, _ in objects if k in meta], 2)
        out = dict(meta)
        for key in (key_a, key_b):
            out[key] = next(_field_edits(rng, key, meta[key], "pair", 1), (None, None, meta[key]))[2]
        yield "pair", f"{key_a} + {key_b}", out, {}


_DROP = object()


# ------------------------------------------------------------------ oracle


def oracle(model, hidden: np.ndarray, vectors: np.ndarray, outputs: dict) -> list[str]:
    """What a loaded model says about itself that its content contradicts ([] = consistent).

    Read from the standard tensor names, the graph's attrs and what embed/run
    returned, not from edgebert/content.py."""
    t, cfg, q = model.file.tensors, model.config, model.quantization
    graph = json.loads(model.file.metadata[names.GRAPH])
    nodes, bad = graph["nodes"], []

    def check(what, said, real):
        if said != real or type(said) is not type(real):
            bad.append(f"{what}: says {said!r}, content {real!r}")

    word = next(n["params"]["word"] for n in nodes if n["op"] == "embed")
    check("vocab_size", cfg["vocab_size"], t[word + ".weight"].shape[0])
    check("hidden_size", cfg["hidden_size"], hidden.shape[-1])
    check("embed dim", vectors.shape[-1], cfg["hidden_size"])
    check("num_layers", cfg["num_layers"], sum(n["op"] == "attention" for n in nodes))
    check("num_heads", {cfg["num_heads"]}, {n["attrs"]["num_heads"] for n in nodes if n["op"] == "attention"})
    check("intermediate_size", {cfg["intermediate_size"]},
          {t[n["params"]["linear"] + ".weight"].shape[1] for n in nodes
           if n["op"] == "linear" and n["params"]["linear"].endswith(".ffn_down")})
    check("layer_norm_eps", {cfg["layer_norm_eps"]}, {n["attrs"]["eps"] for n in nodes if "eps" in n["attrs"]})
    check("hidden_act", {cfg["hidden_act"]}, {n["attrs"]["activation"] for n in nodes
                                              if n["op"] == "linear" and n["params"]["linear"].endswith(".ffn_up")})
    check("max_position_embeddings", cfg["max_position_embeddings"], t["position_embd.weight"].shape[0])
    check("type_vocab_size", cfg["type_vocab_size"], t["token_type_embd.weight"].shape[0])
    qkv = t["blk.0.attn_qkv.weight"].dtype
    check("quantization.weights", q["weights"], "int8_symmetric_per_channel" if qkv == np.int8 else "float32")
    check("quantization.embeddings", q["embeddings"],
          "int8_symmetric_per_row" if t[word + ".weight"].dtype == np.int8 else "float32")
    check("quantization.activations", q["activations"],
          "uint8_asymmetric_per_token_dynamic" if qkv == np.int8 else "float32")
    check("pooling.normalize type", type(model.pooling["normalize"]), bool)
    check("pooling.mode", model.pooling["mode"] in ("mean", "cls", "max"), True)
    if model.pooling["normalize"]:
        check("normalized embeddings", bool(np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-3)), True)
    check("max_length in range", 2 <= model.max_length <= cfg["max_position_embeddings"], True)
    check("pad_token_id in range", 0 <= model.pad_token_id < cfg["vocab_size"], True)
    head = model.head
    if head is None:
        check("outputs of a bare encoder", sorted(outputs), ["last_hidden_state"])
    else:
        if "id2label" in head:
            label_out = "seq_relationship_logits" if head["task"] == "pretraining" else "logits"
            check("id2label count", len(head["id2label"]), outputs[label_out].shape[-1])
        if head["task"] in ("masked-lm", "pretraining"):
            out = "logits" if head["task"] == "masked-lm" else "prediction_logits"
            check("vocab logits", outputs[out].shape[-1], cfg["vocab_size"])
            producer = next(n["op"] for n in nodes if out in n["outputs"])
            check("tied_decoder", head["tied_decoder"], producer == "tied_linear")
    return bad


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fuzz_worker import main

    main()
