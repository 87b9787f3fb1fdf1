"""The endpoints: OpenAI's /v1/embeddings and /v1/models; TEI's /embed, /rerank, /predict,
/tokenize and /info. Each reads its body through its declared ``schemas.Body``."""
from __future__ import annotations

import asyncio
import base64

from starlette.responses import JSONResponse

from .. import __version__
from .http import ApiError, answer, read_json
from .models import normalized
from .schemas import EMBED, EMBEDDINGS, PREDICT, RERANK, TOKENIZE


async def _body(request, state, body):
    limits = state.limits
    return body.parse(await read_json(request, limits.max_body_bytes, limits.read_timeout_s))


def _check_count(state, texts: list, field: str) -> None:
    if len(texts) > state.limits.max_inputs:
        raise ApiError(413, f"{field} has {len(texts)} texts, more than the limit of {state.limits.max_inputs} "
                            f"per request (--max-inputs)")


async def _tokenized(state, served, texts: list, truncate: bool, field: str) -> list:
    """Token ids per text (off the event loop); 413 past the per-request limits."""
    _check_count(state, texts, field)
    encoded = await asyncio.to_thread(served.model.tokenize, texts, truncate)
    tokens = sum(len(ids) for ids, _ in encoded)
    if tokens > state.limits.max_request_tokens:
        raise ApiError(413, f"{field} has {tokens} tokens, more than the limit of {state.limits.max_request_tokens} "
                            f"per request (--max-request-tokens)")
    return encoded


async def _embed(request, state, served, texts: list, truncate: bool, field: str):
    encoded = await _tokenized(state, served, texts, truncate, field)
    vectors = await answer(request, served.batcher.embed(encoded), state.limits.timeout_s)
    return vectors, sum(len(ids) for ids, _ in encoded)


async def openai_embeddings(request, state):
    body = await _body(request, state, EMBEDDINGS)
    served = state.registry.pick(body["model"], "embedding")
    if body["dimensions"] is not None and body["dimensions"] != served.model.dim:
        raise ApiError(422, f"dimensions={body['dimensions']} is not supported: model {served.name!r} gives "
                            f"{served.model.dim} dimensions (omit the field or pass {served.model.dim})")
    vectors, tokens = await _embed(request, state, served, body["input"], True, "input")
    if body["encoding_format"] == "base64":
        values = [base64.b64encode(v.astype("<f4").tobytes()).decode("ascii") for v in vectors]
    else:
        values = vectors.tolist()  # float32 -> float: exact, and JSON round-trips it exactly
    return JSONResponse({"object": "list", "model": served.name,
                         "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)],
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def openai_models(request, state):
    return JSONResponse({"object": "list", "data": [
        {"id": name, "object": "model", "created": int(state.started), "owned_by": "edgebert",
         "kinds": list(s.kinds)} for name, s in state.registry.models.items()]})


async def tei_embed(request, state):
    body = await _body(request, state, EMBED)
    served = state.registry.pick(body["model"], "embedding")
    file_normalizes = bool(served.model.pooling.get("normalize"))
    if not body["normalize"] and file_normalizes:
        raise ApiError(422, f"normalize=false is not available: model {served.name!r} normalizes as part of its "
                            "pooling (its vectors are always unit length)")
    vectors, _ = await _embed(request, state, served, body["inputs"], body["truncate"], "inputs")
    if body["normalize"] and not file_normalizes:
        vectors = normalized(vectors)
    return JSONResponse(vectors.tolist())


async def tei_rerank(request, state):
    body = await _body(request, state, RERANK)
    served = state.registry.pick(body["model"], "reranker")
    texts = body["texts"]
    _check_count(state, texts, "texts")
    query = {"query": body["query"], "documents": texts}
    options = {"return_documents": body["return_text"], "truncation": body["truncate"],
               "function_to_apply": "none" if body["raw_scores"] else "sigmoid"}
    pipe = served.pipeline("text-ranking")  # sentence-transformers' CrossEncoder.rank
    ranked = await answer(request, served.batcher.call(lambda: pipe(query, **options)), state.limits.timeout_s)
    return JSONResponse([{"index": r["corpus_id"], "score": r["score"], **({"text": r["text"]} if "text" in r else {})}
                         for r in ranked])


async def tei_predict(request, state):
    data = await read_json(request, state.limits.max_body_bytes, state.limits.read_timeout_s)
    body = PREDICT.parse(data)
    served = state.registry.pick(body["model"], "classifier")
    inputs = body["inputs"]
    _check_count(state, inputs, "inputs")
    given = body["parameters"] or {}
    for option, field, clash in (("truncation", "truncate", "truncate" in data),
                                 ("function_to_apply", "raw_scores", body["raw_scores"])):
        if option in given and clash:
            raise ApiError(422, f"/predict: {option} in parameters and {field} both given; pass one")
    options = {"top_k": None, "truncation": body["truncate"],
               **({"function_to_apply": "none"} if body["raw_scores"] else {}), **given}
    pipe = served.pipeline("text-classification")
    results = await answer(request, served.batcher.call(lambda: pipe(inputs, **options)), state.limits.timeout_s)
    return JSONResponse(results[0] if isinstance(data["inputs"], str) else results)


async def tei_tokenize(request, state):
    body = await _body(request, state, TOKENIZE)
    served = state.registry.pick(body["model"], "any")
    texts = body["inputs"]
    _check_count(state, texts, "inputs")
    tokenizer = served.model.encoder.tokenizer  # no truncation: every token of the text
    encodings = await asyncio.to_thread(tokenizer.encode_batch, texts, add_special_tokens=body["add_special_tokens"])
    total = sum(len(e.ids) for e in encodings)
    if total > state.limits.max_request_tokens:
        raise ApiError(413, f"inputs have {total} tokens, more than the limit of {state.limits.max_request_tokens} "
                            f"per request (--max-request-tokens)")
    out = []
    for text, enc in zip(texts, encodings):
        out.append([{"id": i, "text": tok if special else text[a:b], "special": bool(special), "start": a, "stop": b}
                    for i, tok, special, (a, b) in zip(enc.ids, enc.tokens, enc.special_tokens_mask, enc.offsets)])
    return JSONResponse(out)


async def tei_info(request, state):
    name = request.query_params.get("model")
    served = state.registry.pick(name, "any")
    limits = state.limits
    return JSONResponse({**served.describe(), "version": __version__, "threads": served.model.threads,
                         "max_client_batch_size": limits.max_inputs, "max_batch_tokens": limits.max_batch_tokens,
                         "max_request_tokens": limits.max_request_tokens, "max_queue": limits.max_queue,
                         "batch_wait_ms": limits.batch_wait_ms, "models": list(state.registry.models)})

