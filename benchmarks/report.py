"""Results -> NAME.json, NAME.md (tables) and NAME.png (chart); NAME is latest unless told.

    python -m benchmarks.report [--results benchmarks/results/latest.json] [--readme]

Regenerates the Markdown and the chart from a results JSON (named after it:
peers.json -> peers.md, peers.png); ``--readme`` also copies the tables into
benchmarks/README.md between its results markers.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks import roofline

HERE = Path(__file__).resolve().parent
README = HERE / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
OURS, BASE = "edgebert", "ort_int8"


def write_all(results: dict, out: Path, name: str = "latest") -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _atomic(out / f"{name}.json", json.dumps(results, indent=1))
    _atomic(out / f"{name}.md", markdown(results))
    chart(results, out / f"{name}.png")


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")  # *.tmp is gitignored
    tmp.write_text(text)
    os.replace(tmp, path)


def _num(x) -> str:
    if x is None:
        return "-"
    return f"{x:.0f}" if abs(x) >= 100 else f"{x:.1f}" if abs(x) >= 10 else f"{x:.2f}"


def _ratio(row: dict, key) -> str:
    ours, base = row.get(OURS), row.get(BASE)
    if ours is None or base is None or not key(base):
        return "-"
    return f"{key(ours) / key(base):.2f}"


def _table(header: list, rows: list) -> list:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + \
           ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]


def markdown(r: dict) -> str:
    names = list(r["engines"])
    labels = [r["engines"][n]["label"] for n in names]
    m, v, rt = r["machine"], r["machine"]["versions"], r.get("runtime", {})
    ratio_head = f"{r['engines'][OURS]['label']} / {r['engines'][BASE]['label']}" \
        if OURS in names and BASE in names else "ratio"
    lines = ["# edgebert against ONNX Runtime and PyTorch: all-MiniLM-L6-v2", "",
             f"Measured {m['date']} on {m['cpu']['model']} ({m['cpu']['usable_cores']} usable cores; "
             f"{', '.join(m['cpu']['flags'])}), mode **{r['mode']}**"
             + (" (few repetitions: indicative only)" if r["mode"] == "quick" else "")
             + f", {r.get('elapsed_s', '?')} s in all. Load average at start / end: "
             f"{m['load_average_at_start'][0]:.2f} / {m.get('load_average_at_end', [float('nan')])[0]:.2f}.",
             "",
             f"Python {v['python']}, numpy {v['numpy']}, numba {v['numba']}, onnxruntime {v['onnxruntime']}, "
             f"torch {v['torch']}, transformers {v['transformers']}"
             + "".join(f", {p} {v[p]}" for p in ("openvino", "nncf", "ctranslate2") if v.get(p))
             + ". edgebert kernel path "
             f"`{rt.get('edgebert_kernel_path')}`, Numba threading layer `{rt.get('numba_threading_layer')}`, "
             f"OpenBLAS variables {rt.get('openblas_env') or 'unset'}. "
             + _isolation(r) + "ONNX Runtime: intra_op_num_threads = threads, inter_op 1, spinning on "
             f"(its default). Ratios are {ratio_head}: below 1 means edgebert is faster (latency) or, for "
             "throughput, slower.", "",
             f"**ONNX Runtime's models were exported by {r['ort_models']['exporter']}**, then optimized (fused: "
             f"{', '.join(f'{k} {n}' for k, n in r['ort_models']['fused_operators'].items())}) "
             f"and quantized dynamically (per-channel QInt8 weights).", ""]
    peers = {n: r["peer_models"][n] for n in names if n in (r.get("peer_models") or {})}
    if peers:
        lines += ["**OpenVINO and CTranslate2 models** (inference precision f32 forced for OpenVINO; "
                  "threads: OpenVINO INFERENCE_NUM_THREADS, one stream; CTranslate2 intra_threads, one inter "
                  "thread):", ""] + [f"- {r['engines'][n]['label']}: {how}" for n, how in peers.items()] + [""]

    lines += ["## Latency of the model call (median ms, p90 in brackets; lower is better)", "",
              "Identical real token ids (windows of the Lee news corpus) for every engine; tokenization "
              f"not timed. Rounds interleave the engines in rotating order, one engine running at a time; "
              f"each timed call follows one untimed call of the same engine (hot latency, as in a stream of "
              f"requests) and is followed by an untimed pause of {r.get('plan', {}).get('settle_s', 0) * 1e3:.0f} "
              "ms or more, until that engine's spinning worker threads have gone idle, before the next "
              "engine runs.", ""]
    rows = []
    for row in r["latency"]:
        e = row["engines"]
        rows.append([row["threads"], f"{row['batch']} x {row['tokens']}", next(iter(e.values()))["n"]]
                    + [f"{_num(e[n]['median_ms'])} ({_num(e[n]['p90_ms'])})" for n in names]
                    + [_ratio(e, lambda x: x["median_ms"])])
    lines += _table(["threads", "batch x tokens", "rounds"] + labels + [ratio_head], rows) + [""]

    if r["throughput"]:
        t0 = r["throughput"][0]
        lines += [f"## Throughput: {t0['texts']} Lee-corpus sentences end to end (texts/s; higher is better)", "",
                  f"Tokenize + model + mean pool + normalize; length-sorted batches of {t0['batch_size']} "
                  "(edgebert packs each batch without padding; the peers pad to the batch's longest text).", ""]
        rows = [[row["threads"], next(iter(row["engines"].values()))["n"]]
                + [_num(row["engines"][n]["texts_per_s"]) for n in names]
                + [_ratio(row["engines"], lambda x: x["texts_per_s"])] for row in r["throughput"]]
        lines += _table(["threads", "passes"] + labels + [ratio_head], rows) + [""]

    lines += ["## Start-up, memory, size, accuracy", ""]
    rows = []
    cs = r.get("coldstart")
    if cs:
        ce = cs["engines"]
        rows.append([f"new process to first embedding, s (threads={cs['threads']}, median of {cs['reps']})"]
                    + [_num(ce[n]["wall_s"]) for n in names] + [_ratio(ce, lambda x: x["wall_s"])])
        rows.append(["peak RSS of that process, MiB"] + [_num(ce[n]["peak_rss_mib"]) for n in names]
                    + [_ratio(ce, lambda x: x["peak_rss_mib"])])
    sizes = {n: r["engines"][n]["file_bytes"] / 1e6 for n in names}
    rows.append(["model file, MB"] + [_num(sizes[n]) + ("*" if r["engines"][n].get("file_note") else "")
                                      for n in names] + [_ratio(sizes, lambda x: x)])
    acc = r.get("accuracy")
    if acc:
        ae = acc["engines"]
        ref = r["engines"][acc["reference"]]["label"]
        for key, text in (("mean_cos", f"mean cosine to {ref}, {acc['texts']} Pang-Lee sentences"),
                          ("min_cos", "worst cosine"), ("nn_agreement", "nearest-neighbour agreement")):
            rows.append([text] + [f"{ae[n][key]:.4f}" for n in names] + [_ratio(ae, lambda x: x[key])])
    lines += _table(["", *labels, ratio_head], rows)
    notes = {r["engines"][n]["label"]: r["engines"][n]["file_note"] for n in names
             if r["engines"][n].get("file_note")}
    lines += [""] + [f"\\* {label}: {note}." for label, note in notes.items()]
    lines += [""] + _roofline(r)
    return "\n".join(lines).rstrip() + "\n"


def _roofline(r: dict) -> list:
    """Achieved int8 TOPS per shape and thread count, and its share of the measured GEMM peak."""
    if not r.get("gemm_peak") or not r.get("model_dims"):
        return []
    points = roofline.achieved(r, r["model_dims"], r["gemm_peak"])
    names = [n for n in r["engines"] if any(p["engine"] == n for p in points)]
    if not names:
        return []
    peaks = r["gemm_peak"]
    lines = ["## Roofline: achieved TOPS against this CPU's int8 GEMM peak", "",
             "Ops of the encoder's matmuls (2 per multiply-add: the six linears of every layer and the "
             "attention products Q.K^T and P.V, whatever their precision; see benchmarks/roofline.py) over "
             "the median latency above, in TOPS, with the percentage of the peak: the best rate of large "
             "MiniLM-sized int8 GEMMs measured on this CPU in the same run, the fastest of "
             f"{next(iter(peaks.values())).get('reps', '?')} calls ("
             + "; ".join(f"{t} thread{'s' if t != '1' else ''}: {p['tops']:.3f} TOPS, {p['impl']} at "
                         f"{p['shape']}" + "".join(f"; {o['impl']} {o['tops']:.3f}" for o in p.get("other", []))
                         for t, p in peaks.items()) + ").", ""]
    by = {(p["threads"], p["batch"], p["tokens"], p["engine"]): p for p in points}
    rows = []
    for row in r["latency"]:
        key = (row["threads"], row["batch"], row["tokens"])
        cells = []
        for n in names:
            p = by.get(key + (n,))
            cells.append("-" if p is None else f"{p['tops']:.3f} ({p['of_peak'] * 100:.0f} %)"
                         if p["of_peak"] is not None else f"{p['tops']:.3f}")
        rows.append([row["threads"], f"{row['batch']} x {row['tokens']}"] + cells)
    return lines + _table(["threads", "batch x tokens"] + [r["engines"][n]["label"] for n in names], rows)


def _isolation(r: dict) -> str:
    if r.get("isolation") == "process per engine":
        return ("Each engine runs in a worker process of its own (multiprocessing spawn, the benchmark's "
                "starting environment), driven over a pipe by a coordinator. ")
    return "All engines ran in one process (runs before per-engine processes). "


def chart(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(r["engines"])
    labels = [r["engines"][n]["label"] for n in names]
    points = roofline.achieved(r, r["model_dims"], r["gemm_peak"]) if r.get("gemm_peak") and r.get("model_dims") else []
    ratios = [3, 1, 2] if points else [3, 1]
    fig, axes = plt.subplots(1, len(ratios), figsize=(6 + 3.5 * len(ratios), 4.8), gridspec_kw={"width_ratios": ratios})
    ax1, ax2 = axes[:2]
    groups = [f"{x['batch']}x{x['tokens']}\n{x['threads']} thr" for x in r["latency"]]
    width = 0.8 / len(names)
    for i, (n, label) in enumerate(zip(names, labels)):
        ratios = [x["engines"][n]["median_ms"] / x["engines"][BASE]["median_ms"] if BASE in x["engines"]
                  else float("nan") for x in r["latency"]]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        ax1.bar(xs, ratios, width, label=label)
        if n == OURS:
            for x, y in zip(xs, ratios):
                ax1.annotate(f"{y:.2f}", (x, y), ha="center", va="bottom", fontsize=7)
    ax1.axhline(1.0, color="black", linewidth=0.8)
    ax1.set_yscale("log")
    ax1.set_xticks(range(len(groups)), groups, fontsize=8)
    ax1.set_ylabel(f"median latency / {r['engines'].get(BASE, {}).get('label', BASE)} (lower is better)")
    ax1.set_title("Model-call latency relative to ONNX Runtime int8")
    ax1.legend(fontsize=8)
    for i, n in enumerate(names):
        xs = [t + (i - (len(names) - 1) / 2) * width for t in range(len(r["throughput"]))]
        ax2.bar(xs, [x["engines"][n]["texts_per_s"] for x in r["throughput"]], width, label=labels[i])
    ax2.set_xticks(range(len(r["throughput"])), [f"{x['threads']} thr" for x in r["throughput"]])
    ax2.set_ylabel("texts/s (higher is better)")
    ax2.set_title(f"Throughput, {r['throughput'][0]['texts'] if r['throughput'] else 0} sentences")
    if points:
        _roofline_chart(axes[2], r, points, groups)
    fig.suptitle(f"all-MiniLM-L6-v2 on {r['machine']['cpu']['model']} ({r['mode']} run, {r['machine']['date']})",
                 fontsize=10)
    fig.tight_layout()
    tmp = path.with_suffix(".png.tmp")
    fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    os.replace(tmp, path)


def _roofline_chart(ax, r: dict, points: list, groups: list) -> None:
    """Percent of the measured int8 GEMM peak per shape, for the int8 engines."""
    names = [n for n in r["engines"] if any(p["engine"] == n for p in points)]
    by = {(p["threads"], p["batch"], p["tokens"], p["engine"]): p for p in points}
    width = 0.8 / len(names)
    for i, n in enumerate(names):
        ys = [(by.get((x["threads"], x["batch"], x["tokens"], n)) or {}).get("of_peak") for x in r["latency"]]
        xs = [g + (i - (len(names) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, [100 * y if y is not None else float("nan") for y in ys], width, label=r["engines"][n]["label"],
               color=f"C{list(r['engines']).index(n) % 10}")  # each engine's colour in the other panels
    ax.axhline(100, color="black", linewidth=0.8)
    ax.set_xticks(range(len(groups)), groups, fontsize=7)
    ax.set_ylabel("% of measured int8 GEMM peak")
    ax.set_title("Roofline: achieved int8 TOPS / peak")


def update_readme(md: str, readme: Path = README) -> None:
    """Replace the text between the results markers of README.md with ``md``."""
    text = readme.read_text()
    head, sep1, rest = text.partition(START)
    _, sep2, tail = rest.partition(END)
    if not (sep1 and sep2):
        raise SystemExit(f"{readme}: markers {START} ... {END} not found")
    body = md.split("\n", 1)[1].lstrip("\n")  # drop the file's own H1 title
    body = body.replace("\n## ", "\n### ")
    _atomic(readme, f"{head}{START}\n{body}{END}{tail}")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=HERE / "results" / "latest.json")
    parser.add_argument("--readme", action="store_true", help="also refresh benchmarks/README.md's results")
    args = parser.parse_args()
    results = json.loads(args.results.read_text())
    name = args.results.stem  # peers.json -> peers.md, peers.png
    write_all(results, args.results.parent, name)
    if args.readme:
        update_readme((args.results.parent / f"{name}.md").read_text())
    print((args.results.parent / f"{name}.md").read_text())
