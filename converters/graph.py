"""The graph a converter emits: ordered nodes over named packed activations (docs/format.md)."""
from __future__ import annotations

from edgebert import names
from edgebert.ops import GRAPH_INPUTS

from .spec import BERT_HEADS, RELATIVE_MAX_DISTANCE, EncoderConfig, HeadGraph


def node(op: str, inputs: list[str], outputs: list[str], params: dict | None = None, **attrs) -> dict:
    return {"op": op, "inputs": inputs, "outputs": outputs, "params": params or {}, "attrs": attrs}


def bert_encoder_graph(c: EncoderConfig) -> dict:
    """Embeddings (projected when embedding_size is set), then per layer: QKV, attention, output proj,
    add+norm, FFN, add+norm."""
    eps = c.layer_norm_eps
    params = {"word": names.TOKEN_EMBD.prefix(), "position": names.POSITION_EMBD.prefix(),
              "token_type": names.TOKEN_TYPE_EMBD.prefix(), "norm": names.EMBD_NORM.prefix()}
    if not c.type_vocab_size:
        del params["token_type"]
    if c.position != "absolute":  # positions enter each layer's q and k (rotary) or attention (relative) instead
        del params["position"]
    attrs = {"eps": eps}  # non-default position numbering only: BERT's graph stays as it was
    if c.position_offset:
        attrs["position_offset"] = c.position_offset
    if c.position_ids != "column":
        attrs["position_ids"] = c.position_ids
    embedded = "h0" if c.embedding_size is None else "embeddings"
    nodes = [node("embed", ["input_ids", "token_type_ids", "position_ids"], [embedded], params, **attrs)]
    if c.embedding_size is not None:
        nodes.append(node("linear", [embedded], ["h0"], {"linear": names.EMBD_PROJ.prefix()}, activation="none"))
    if c.norm_placement == "pre":
        return {"inputs": list(GRAPH_INPUTS), "outputs": ["last_hidden_state"], "nodes": nodes + pre_norm_layers(c)}
    h = "h0"
    for i in range(c.num_layers):
        out = "last_hidden_state" if i == c.num_layers - 1 else f"h{i + 1}"
        layer_out = "layer0" if i == 0 and c.conv_kernel_size else out
        w = c.weights_of(i)  # shared_layers: every layer's nodes name blk.0's tensors, stored once
        nodes += [
            node("linear", [h], [f"qkv{i}"], {"linear": names.ATTN_QKV.prefix(w)}, activation="none"),
            attention(c, f"qkv{i}", f"ctx{i}", w),
            node("linear", [f"ctx{i}"], [f"ao{i}"], {"linear": names.ATTN_OUTPUT.prefix(w)}, activation="none"),
            node("add_norm", [f"ao{i}", h], [f"n{i}"], {"norm": names.ATTN_NORM.prefix(w)}, eps=eps),
            *feed_forward(c, i, f"n{i}", f"down{i}", w),
            node("add_norm", [f"down{i}", f"n{i}"], [layer_out], {"norm": names.FFN_NORM.prefix(w)}, eps=eps),
        ]
        if layer_out != out:  # DeBERTa-v2: norm(layer 0's output + act(Conv1d over the embeddings))
            nodes += [
                node("neighbours", ["h0", "seq_offsets"], ["conv_in"], size=c.conv_kernel_size),
                node("linear", ["conv_in"], ["conv_out"], {"linear": names.CONV.prefix()}, activation=c.conv_act),
                node("add_norm", ["conv_out", layer_out], [out], {"norm": names.CONV_NORM.prefix()}, eps=eps),
            ]
        h = out
    if c.num_layers == 0:
        raise ValueError("a BERT encoder needs at least one layer")
    return {"inputs": list(GRAPH_INPUTS), "outputs": ["last_hidden_state"], "nodes": nodes}


def attention(c: EncoderConfig, qkv: str, out: str, w: int = 0) -> dict:
    """Plain attention, with the relative position bias every layer shares (relative_buckets), or
    disentangled (max_relative_positions; stored layer ``w``'s projections)."""
    if c.max_relative_positions is not None:
        params = {"rel": names.REL_EMBD.prefix(),
                  "pos_proj": (names.ATTN_QKV if c.share_att_key else names.ATTN_POS).prefix(w)}
        attrs = {"eps": c.layer_norm_eps} if c.rel_norm else {}
        if c.rel_norm:
            params["rel_norm"] = names.REL_NORM.prefix()
        return node("disentangled_attention", [qkv, "seq_offsets"], [out], params, num_heads=c.num_heads,
                    position_buckets=c.position_buckets, max_relative_positions=c.max_relative_positions, **attrs)
    if c.relative_buckets is None:
        return node("attention", [qkv, "seq_offsets"], [out], num_heads=c.num_heads)
    return node("relative_attention", [qkv, "seq_offsets"], [out], {"bias": names.REL_BIAS.prefix()},
                num_heads=c.num_heads, num_buckets=c.relative_buckets, max_distance=RELATIVE_MAX_DISTANCE)


def pre_norm_layers(c: EncoderConfig) -> list[dict]:
    """ModernBERT's layers over h0: h + attention(norm(h)) (layer 0 reads h0 as it is), then
    h + feed_forward(norm(h)); rotary q and k, a window on local layers; a final norm."""
    eps, nodes, h = c.layer_norm_eps, [], "h0"
    for i in range(c.num_layers):
        x = h
        if i:
            x = f"an{i}"
            nodes.append(node("norm", [h], [x], {"norm": names.ATTN_NORM.prefix(i)}, eps=eps))
        nodes.append(node("linear", [x], [f"qkv{i}"], {"linear": names.ATTN_QKV.prefix(i)}, activation="none"))
        qkv = f"qkv{i}"
        if c.position == "rotary":
            qkv = f"rot{i}"
            nodes.append(node("rotary", [f"qkv{i}", "position_ids"], [qkv], num_heads=c.num_heads,
                              theta=c.layer_theta(i)))
        window = {} if c.layer_window(i) is None else {"window": c.layer_window(i)}
        nodes += [
            node("attention", [qkv, "seq_offsets"], [f"ctx{i}"], num_heads=c.num_heads, **window),
            node("linear", [f"ctx{i}"], [f"ao{i}"], {"linear": names.ATTN_OUTPUT.prefix(i)}, activation="none"),
            node("add", [h, f"ao{i}"], [f"r{i}"]),
            node("norm", [f"r{i}"], [f"fn{i}"], {"norm": names.FFN_NORM.prefix(i)}, eps=eps),
            *feed_forward(c, i, f"fn{i}", f"down{i}"),
            node("add", [f"r{i}", f"down{i}"], [f"h{i + 1}"]),
        ]
        h = f"h{i + 1}"
    return nodes + [node("norm", [h], ["last_hidden_state"], {"norm": names.FINAL_NORM.prefix()}, eps=eps)]


def feed_forward(c: EncoderConfig, i: int, x: str, out: str, w: int | None = None) -> list[dict]:
    """Layer i's up and down projections (stored layer ``w``'s tensors, default i): hidden_act
    between them, or a gated GELU (config.feed_forward)."""
    w = i if w is None else w
    up, down = {"linear": names.FFN_UP.prefix(w)}, {"linear": names.FFN_DOWN.prefix(w)}
    if c.feed_forward == "gated":
        return [node("linear", [x], [f"up{i}"], up, activation="none"),
                node("geglu", [f"up{i}"], [f"gated{i}"]),
                node("linear", [f"gated{i}"], [out], down, activation="none")]
    return [node("linear", [x], [f"up{i}"], up, activation=c.hidden_act),
            node("linear", [f"up{i}"], [out], down, activation="none")]


def build_graph(c: EncoderConfig, head: dict | None, style: HeadGraph = BERT_HEADS) -> dict:
    """The encoder, then the head's nodes (if any) reading ``last_hidden_state``."""
    graph = bert_encoder_graph(c)
    if head is not None:
        nodes, outputs = head_nodes(c, head, style)
        graph["nodes"] += nodes
        graph["outputs"] += outputs
    return graph


def head_nodes(c: EncoderConfig, head: dict, style: HeadGraph = BERT_HEADS) -> tuple[list[dict], list[str]]:
    """Nodes and extra outputs of a task head (docs/format.md, "Heads")."""
    task, h = head["task"], "last_hidden_state"
    pooled = style.pooled_output or "pooled"
    pool, token = {"first": ("first_token", "cls_token"), "mean": ("mean_pool", "mean_token")}[style.pooling]
    pooler = [node(pool, [h, "seq_offsets"], [token]),
              node("linear", [token], [pooled], {"linear": names.POOLER.prefix()},
                   activation=style.pooled_activation)]
    exposed = [pooled] if style.pooled_output else []
    token_in, token_head = h, []  # what token-level heads read
    if style.head_norm:  # ModernBERT's prediction head: dense, activation, norm (pooled, and per token)
        pooler.append(node("norm", [pooled], ["pooled_normed"], {"norm": names.POOLER_NORM.prefix()},
                           eps=c.layer_norm_eps))
        pooled, token_in = "pooled_normed", "head_normed"
        token_head = [node("linear", [h], ["head_hidden"], {"linear": names.POOLER.prefix()},
                           activation=style.pooled_activation),
                      node("norm", ["head_hidden"], [token_in], {"norm": names.POOLER_NORM.prefix()},
                           eps=c.layer_norm_eps)]

    def mlm(out: str) -> list[dict]:
        decoder = (node("tied_linear", ["mlm_normed"], [out],
                        {"weight": names.TOKEN_EMBD.prefix(), "bias": names.MLM_DECODER.prefix()})
                   if head.get("tied_decoder", True) else
                   node("linear", ["mlm_normed"], [out], {"linear": names.MLM_DECODER.prefix()}, activation="none"))
        return [node("linear", [h], ["mlm_hidden"], {"linear": names.MLM_TRANSFORM.prefix()},
                     activation=style.mlm_activation or c.hidden_act),
                node("norm", ["mlm_hidden"], ["mlm_normed"], {"norm": names.MLM_NORM.prefix()},
                     eps=c.layer_norm_eps),
                decoder]

    def final(x: str, role: names.Role, out: str) -> dict:
        return node("linear", [x], [out], {"linear": role.prefix()}, activation="none")

    if task == "sequence-classification":
        return pooler + [final(pooled, names.CLASSIFIER, "logits")], exposed + ["logits"]
    if task == "token-classification":
        return token_head + [final(token_in, names.CLASSIFIER, "logits")], ["logits"]
    if task == "question-answering":
        return token_head + [final(token_in, names.QA, "qa_logits")], ["qa_logits"]
    if task == "masked-lm":
        return mlm("logits"), ["logits"]
    if task == "next-sentence":
        return pooler + [final(pooled, names.NSP, "logits")], exposed + ["logits"]
    if task == "pretraining":
        return (pooler + mlm("prediction_logits") + [final(pooled, names.NSP, "seq_relationship_logits")],
                exposed + ["prediction_logits", "seq_relationship_logits"])
    if task == "replaced-token-detection":  # ELECTRA's discriminator: one logit per token
        return ([node("linear", [h], ["rtd_hidden"], {"linear": names.RTD_TRANSFORM.prefix()},
                      activation=c.hidden_act),
                 final("rtd_hidden", names.RTD, "rtd_logits")], ["rtd_logits"])
    raise ValueError(f"unknown head task {task!r}")
