"""edgebert serve over loopback with real clients (the official openai package, httpx):
answers equal the library's own, route by route."""
from __future__ import annotations

import base64

import numpy as np
import pytest

pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

import edgebert  # noqa: E402
from edgebert.pipelines import options_schema  # noqa: E402

from serving import ThreadServer  # noqa: E402

# float32 engine against torch on the same tiny cross-encoder: only the summation order differs
RERANK_TOL = 1e-5
TEXTS = ["A quiet film about grief.", "The cat sat on the mat.", "Stocks fell sharply on Monday.",
         "An unexpectedly moving ending, with a score that lingers for days afterwards.", "ok"]


@pytest.fixture(scope="module")
def files(tiny_int8, tiny_head):
    return {"emb": tiny_int8,
            "clf": tiny_head("BertForSequenceClassification", "int8", num_labels=3),
            "rr": tiny_head("BertForSequenceClassification", "float32", num_labels=1)}


@pytest.fixture(scope="module")
def server(files):
    with ThreadServer([(name, path) for name, path in files.items()]) as s:
        yield s


def post(server, route, body, **kw):
    return httpx.post(server.url + route, json=body, timeout=30, **kw)


def test_openai_client_gets_model_embed(server, files):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    expected = edgebert.load(files["emb"]).embed(TEXTS)
    for fmt in ({}, {"encoding_format": "float"}):  # the client's default asks for base64 and decodes it
        out = client.embeddings.create(model="emb", input=TEXTS, **fmt)
        got = np.array([d.embedding for d in out.data], dtype=np.float32)
        np.testing.assert_array_equal(got, expected)  # bit-identical, through JSON or base64
        assert [d.index for d in out.data] == list(range(len(TEXTS)))
    tokens = sum(len(ids) for ids, _ in edgebert.load(files["emb"]).tokenize(TEXTS))
    assert out.usage.prompt_tokens == out.usage.total_tokens == tokens
    one = client.embeddings.create(model="default", input=TEXTS[1])  # a single string; default = first model
    np.testing.assert_array_equal(np.array(one.data[0].embedding, dtype=np.float32), expected[1])
    assert [m.id for m in client.models.list().data] == ["emb", "clf", "rr"]


def test_openai_base64_is_little_endian_float32(server, files):
    r = post(server, "/v1/embeddings", {"input": TEXTS[:2], "encoding_format": "base64"})
    vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in r.json()["data"]]
    np.testing.assert_array_equal(np.stack(vectors), edgebert.load(files["emb"]).embed(TEXTS[:2]))


def test_tei_embed_normalize_and_truncate(server, files):
    model = edgebert.load(files["emb"])
    assert not model.pooling.get("normalize")  # the tiny file pools without normalizing
    raw = np.array(post(server, "/embed", {"inputs": TEXTS, "normalize": False}).json(), dtype=np.float32)
    np.testing.assert_array_equal(raw, model.embed(TEXTS))
    unit = np.array(post(server, "/embed", {"inputs": TEXTS}).json(), dtype=np.float32)  # TEI's default
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-6, atol=1e-7)
    long = "word " * (model.max_length * 2)
    cut = post(server, "/embed", {"inputs": long, "normalize": False})
    np.testing.assert_array_equal(np.array(cut.json(), dtype=np.float32), model.embed([long]))
    refused = post(server, "/embed", {"inputs": [long], "truncate": False})
    assert refused.status_code == 422 and "maximum" in refused.json()["error"]


def test_rerank_is_a_cross_encoder(server, files, tiny_head):
    import torch
    import transformers

    query, texts = "what do cats do?", TEXTS
    r = post(server, "/rerank", {"query": query, "texts": texts, "return_text": True})
    assert r.status_code == 200, r.text
    ranked = r.json()
    folder = tiny_head("BertForSequenceClassification", num_labels=1)
    tok = transformers.AutoTokenizer.from_pretrained(folder)
    ref = transformers.BertForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = ref(**tok([query] * len(texts), texts, padding=True, return_tensors="pt")).logits[:, 0]
    expected = torch.sigmoid(logits).numpy()  # sentence-transformers' CrossEncoder with one label
    assert [x["index"] for x in ranked] == list(np.argsort(-expected, kind="stable"))
    for x in ranked:
        assert x["text"] == texts[x["index"]]
        assert abs(x["score"] - expected[x["index"]]) < RERANK_TOL
    raw = post(server, "/rerank", {"query": query, "texts": texts, "raw_scores": True}).json()
    for x in raw:
        assert abs(x["score"] - float(logits[x["index"]])) < RERANK_TOL and "text" not in x


def test_predict_is_the_classification_pipeline(server, files):
    pipe = edgebert.pipeline("text-classification", model=files["clf"])
    r = post(server, "/predict", {"inputs": TEXTS})
    assert r.json() == pipe(TEXTS, top_k=None)
    assert post(server, "/predict", {"inputs": TEXTS[0]}).json() == pipe(TEXTS[0], top_k=None)
    pairs = [[TEXTS[0], TEXTS[1]], {"text": TEXTS[2], "text_pair": TEXTS[3]}]
    expected = pipe([{"text": TEXTS[0], "text_pair": TEXTS[1]}, {"text": TEXTS[2], "text_pair": TEXTS[3]}],
                    top_k=1, function_to_apply="sigmoid")
    got = post(server, "/predict", {"inputs": pairs, "parameters": {"top_k": 1, "function_to_apply": "SIGMOID"}})
    assert got.json() == expected
    raw = post(server, "/predict", {"inputs": TEXTS[:2], "raw_scores": True}).json()
    assert raw == pipe(TEXTS[:2], top_k=None, function_to_apply="none")


def test_tokenize_gives_ids_and_offsets(server, files):
    model = edgebert.load(files["emb"])
    out = post(server, "/tokenize", {"inputs": TEXTS[:2]}).json()
    for text, tokens, (ids, _) in zip(TEXTS, out, model.tokenize(TEXTS[:2])):
        assert [t["id"] for t in tokens] == ids
        assert tokens[0]["special"] and tokens[-1]["special"]
        assert "".join(t["text"] for t in tokens if not t["special"]).lower() == text.replace(" ", "").lower()
    bare = post(server, "/tokenize", {"inputs": "ok", "add_special_tokens": False}).json()
    assert not any(t["special"] for t in bare[0])


def test_info_openapi_and_metrics(server, files):
    info = httpx.get(server.url + "/info").json()
    assert info["model_id"] == "emb" and info["model_type"]["embedding"]["dimensions"] == 64
    assert httpx.get(server.url + "/info", params={"model": "rr"}).json()["model_type"]["reranker"]
    spec = httpx.get(server.url + "/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    # /predict's parameters are the pipeline's own declared options, not a second declaration
    assert body["properties"]["parameters"]["anyOf"][0]["properties"] == \
        options_schema("text-classification")["properties"]
    assert set(spec["paths"]) >= {"/v1/embeddings", "/embed", "/rerank", "/predict", "/tokenize", "/health"}
    before = server.metric("edgebert_requests_total", route="/embed", status="200")
    post(server, "/embed", {"inputs": "x"})
    text = httpx.get(server.url + "/metrics").text
    assert server.metric("edgebert_requests_total", route="/embed", status="200") == before + 1
    for name in ("edgebert_batch_sequences", "edgebert_queue_seconds", "edgebert_inference_seconds",
                 "edgebert_tokens_total"):
        assert name in text
