"""ModernBERT: every head transformers 4.57 has for it, converted from tiny random models (3 layers:
one global, two within a window of 8 tokens; sentences longer than the window) and compared with
transformers itself (the eager attention path)."""
from __future__ import annotations

import numpy as np
import pytest

import edgebert
from edgebert.errors import UnsupportedModel
from edgebert.format import read_model

from conftest import model_cache
from modernbert_models import CONFIG, make_modernbert
from test_families import _same  # structures equal, scores within its FP32_SCORE_ATOL

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# float32 file vs torch: the same math, only float32 summation order differs (tests/test_families.py).
FP32_ATOL = 1e-4
# int8 file vs torch FP32: mean cosine of the last hidden state's token rows (issue 12's bar).
INT8_MIN_COSINE = 0.99
# Numba kernels vs NumPy references on one int8 file (tests/test_families.py's KERNEL_REL).
KERNEL_REL = 5e-3
WINDOW = CONFIG["local_attention"] // 2

CASES = {  # source class -> (outputs compared, config overrides)
    "ModernBertModel": ([], {}),
    "ModernBertForMaskedLM": (["logits"], {}),
    "ModernBertForSequenceClassification": (["logits"], {"num_labels": 3}),
    "ModernBertForTokenClassification": (["logits"], {"num_labels": 5}),
    "ModernBertForQuestionAnswering": (["start_logits", "end_logits"], {}),
}
MEAN = {"classifier_pooling": "mean", "num_labels": 2}


@pytest.fixture(scope="module")
def modernbert(tmp_path_factory, pang_lee_texts):
    """``modernbert(class, dtype=None, **overrides)`` -> the transformers folder, or a converted file."""
    def build(folder, model_class, **overrides):
        return make_modernbert(folder, model_class, pang_lee_texts, **{**CASES[model_class][1], **overrides})
    return model_cache(tmp_path_factory, build)


def _batch(folder, texts):
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    return {k: v.numpy() for k, v in tok(texts, padding=True, return_tensors="pt").items()}


def _torch(folder, batch, names):
    cls = transformers.AutoConfig.from_pretrained(folder).architectures[0]
    model = getattr(transformers, cls).from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)
        # ModernBERT's hidden_states end before its final norm; last_hidden_state is after it
        last = (model if cls == "ModernBertModel" else model.model).final_norm(out.hidden_states[-1])
    return {"last_hidden_state": last.numpy()} | {n: out[n].numpy() for n in names}


def _rows(x, mask):
    return x[mask.astype(bool)] if x.shape[:2] == mask.shape else x


@pytest.fixture(scope="module")
def texts(pang_lee_texts):
    """Three sentences of different lengths, each longer than the window (real rows only compared)."""
    picked = [t for t in pang_lee_texts if 12 <= len(t.split()) <= 30][:3]
    return picked


@pytest.mark.parametrize("model_class, overrides", [(c, {}) for c in CASES] + [
    ("ModernBertForSequenceClassification", MEAN)], ids=[*CASES, "SequenceClassification-mean"])
def test_float32_matches_transformers(modernbert, texts, model_class, overrides):
    names = CASES[model_class][0]
    folder = modernbert(model_class, **overrides)
    batch = _batch(folder, texts)
    assert batch["attention_mask"].sum(1).min() > 2 * WINDOW + 1  # the window matters
    want = _torch(folder, batch, names)
    path = modernbert(model_class, "float32", **overrides)
    assert read_model(path).metadata["edgebert.architecture"] == "modernbert"
    got = edgebert.load(path).forward(batch["input_ids"], batch["attention_mask"])
    mask = batch["attention_mask"]
    for name in ["last_hidden_state", *names]:
        assert got[name].shape == want[name].shape, name
        np.testing.assert_allclose(_rows(got[name], mask), _rows(want[name], mask), atol=FP32_ATOL, rtol=0,
                                   err_msg=f"{model_class} {name}")


def test_graph_has_rotary_windows_and_no_position_table(modernbert):
    model = edgebert.load(modernbert("ModernBertModel", "float32"))
    nodes = model.file.json("edgebert.graph")["nodes"]
    attention = [n["attrs"] for n in nodes if n["op"] == "attention"]
    thetas = [n["attrs"]["theta"] for n in nodes if n["op"] == "rotary"]
    assert attention == [{"num_heads": 4}, {"num_heads": 4, "window": WINDOW}, {"num_heads": 4, "window": WINDOW}]
    assert thetas == [CONFIG["global_rope_theta"], CONFIG["local_rope_theta"], CONFIG["local_rope_theta"]]
    assert "position_embd.weight" not in model.file.tensors and "blk.0.attn_norm.weight" not in model.file.tensors
    assert model.config["norm_placement"] == "pre" and model.config["global_every"] == 3
    assert model.max_positions == CONFIG["max_position_embeddings"]


@pytest.mark.parametrize("overrides", [{"global_attn_every_n_layers": 1}, {"local_rope_theta": 10000.0},
                                       {"global_rope_theta": 1000.0}], ids=["no-window", "local-base", "global-base"])
def test_the_window_and_both_bases_matter(modernbert, texts, overrides):
    """transformers' own states move by far more than FP32_ATOL without the window or with either rotary
    base changed: the float32 comparisons above check each of them."""
    folder = modernbert("ModernBertModel")
    batch = _batch(folder, texts)
    mask = batch["attention_mask"].astype(bool)
    ids = {k: torch.from_numpy(v) for k, v in batch.items()}
    states = []
    for cfg in ({}, overrides):
        model = transformers.ModernBertModel.from_pretrained(folder, attn_implementation="eager", **cfg).eval()
        with torch.no_grad():
            states.append(model(**ids).last_hidden_state.numpy()[mask])
    assert np.abs(states[0] - states[1]).max() > 10 * FP32_ATOL


def test_padding_and_packing_give_the_same_states(modernbert, texts):
    """Left or right padding, in a batch or alone: transformers numbers positions by column (its
    default position_ids), as the file's graph does; each sequence alone gives the same rows."""
    folder = modernbert("ModernBertModel")
    model = edgebert.load(modernbert("ModernBertModel", "float32"))
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ids = [tok(t)["input_ids"] for t in texts]
    alone = [model.run(np.array([s]), np.ones((1, len(s)), dtype=np.int64))[0] for s in ids]
    width = max(map(len, ids))
    right = np.array([s + [0] * (width - len(s)) for s in ids])
    mask = (np.arange(width)[None] < np.array([len(s) for s in ids])[:, None]).astype(np.int64)
    batched = model.run(right, mask)
    for i, s in enumerate(ids):
        np.testing.assert_allclose(batched[i, :len(s)], alone[i], atol=FP32_ATOL, rtol=0)
    left = np.array([[0] * (width - len(s)) + s for s in ids])
    left_mask = mask[:, ::-1].copy()
    with torch.no_grad():
        want = transformers.ModernBertModel.from_pretrained(folder, attn_implementation="eager").eval()(
            input_ids=torch.from_numpy(left), attention_mask=torch.from_numpy(left_mask)).last_hidden_state.numpy()
    got = model.run(left, left_mask)
    np.testing.assert_allclose(got[left_mask.astype(bool)], want[left_mask.astype(bool)], atol=FP32_ATOL, rtol=0)


@pytest.mark.parametrize("model_class", ["ModernBertModel", "ModernBertForSequenceClassification"])
def test_int8_token_cosine_and_kernels(modernbert, texts, model_class):
    folder = modernbert(model_class)
    batch = _batch(folder, texts)
    want = _torch(folder, batch, [])["last_hidden_state"]
    path = modernbert(model_class, "int8")
    args, mask = (batch["input_ids"], batch["attention_mask"]), batch["attention_mask"]
    fast, slow = edgebert.load(path).forward(*args), edgebert.load(path, backend="numpy").forward(*args)
    a, b = _rows(fast["last_hidden_state"], mask), _rows(want, mask)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    print(f"{model_class} int8: mean token cosine {cos.mean():.5f}, worst {cos.min():.5f}")
    assert cos.mean() >= INT8_MIN_COSINE, cos.mean()
    for name, value in slow.items():  # rotary, windowed attention, add, mean_pool kernels vs references
        np.testing.assert_allclose(fast[name], value, atol=KERNEL_REL * np.abs(value).max(), rtol=0, err_msg=name)


@pytest.mark.parametrize("key, value, message", [
    ("rope_scaling", {"rope_type": "linear", "factor": 2.0}, "rope_scaling"),
    ("hidden_activation", "silu", "hidden_act 'silu' is not supported"),
    ("classifier_activation", "silu", "classifier_activation 'silu' is not supported"),
])
def test_unsupported_settings_are_refused(modernbert, tmp_path, key, value, message):
    import json
    import shutil

    from edgebert.converters import convert

    folder = tmp_path / "m"
    shutil.copytree(modernbert("ModernBertForSequenceClassification"), folder)
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**cfg, key: value}))
    with pytest.raises(UnsupportedModel, match=message):
        convert(folder, tmp_path / "out.edgebert", dtype="float32")


# ---- pipelines on float32 files give transformers' own answers ----------------------
PIPELINES = [
    ("text-classification", "ModernBertForSequenceClassification", {}, {"top_k": None}),
    ("text-classification", "ModernBertForSequenceClassification", MEAN, {"top_k": None}),
    ("token-classification", "ModernBertForTokenClassification", {}, {"aggregation_strategy": "simple"}),
    ("fill-mask", "ModernBertForMaskedLM", {}, {"top_k": 3}),
]


@pytest.mark.parametrize("task, model_class, overrides, options", PIPELINES,
                         ids=["cls-pooling", "mean-pooling", "token-classification", "fill-mask"])
def test_pipelines_give_transformers_answers(modernbert, pang_lee_texts, task, model_class, overrides, options):
    torch.set_num_threads(1)
    folder = modernbert(model_class, **overrides)
    model = getattr(transformers, model_class).from_pretrained(folder, attn_implementation="eager").eval()
    theirs = transformers.pipeline(task, model=model, tokenizer=transformers.AutoTokenizer.from_pretrained(folder),
                                   device="cpu")
    mine = edgebert.pipeline(task, model=modernbert(model_class, "float32", **overrides), threads=1)
    texts = [t for t in pang_lee_texts if 10 <= len(t.split()) <= 25][:8]  # longer than the window
    if task == "fill-mask":
        mask = theirs.tokenizer.mask_token
        texts = [" ".join(w if i != 4 else mask for i, w in enumerate(t.split())).replace(f" {mask}", mask)
                 for t in texts]
    want = theirs(texts, **options)
    _same(mine(texts, **options), want, model_class)
    assert all(len(r) for r in want)
    if task == "text-classification":  # pairs too: [CLS] A [SEP] B [SEP], longer than the window
        pairs = [{"text": a, "text_pair": b} for a, b in zip(texts, texts[1:])]
        _same(mine(pairs, **options), theirs(pairs, **options), model_class)


@pytest.mark.parametrize("layers, every, windows", [
    (3, 3, [None, 4, 4]), (3, 7, [None, 4, 4]), (4, 2, [None, 4, None, 4]), (1, 3, [None]), (3, 1, [None] * 3)])
def test_layer_layout_is_normalised_and_read_back_from_the_graph(layers, every, windows):
    """transformers' layout (layer i global iff i % n == 0), stored with n capped at num_layers and no local
    settings without local layers, so that the graph alone (edgebert/content.py) gives the same config."""
    from edgebert.content import Content, config_facts
    from edgebert.converters.graph import build_graph
    from edgebert.converters.modernbert import read_config
    from edgebert.converters.spec import bert_slots

    cfg = {**CONFIG, "vocab_size": 50, "num_hidden_layers": layers, "global_attn_every_n_layers": every}
    config = read_config(cfg)
    assert [config.layer_window(i) for i in range(layers)] == windows
    tensors = {name: np.zeros(slot.shape, dtype=np.float32) for name, slot in bert_slots(config).items()}
    facts = config_facts(Content(build_graph(config, None), tensors))
    for field in ("norm_placement", "position", "rope_theta", "local_rope_theta", "local_window", "global_every"):
        assert facts[field] == getattr(config, field), field
