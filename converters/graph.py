"""The graph a converter emits: ordered nodes over named packed activations (docs/format.md)."""
from __future__ import annotations

from .spec import BertConfig

GRAPH_INPUTS = ["input_ids", "token_type_ids", "position_ids", "seq_offsets"]


def node(op: str, inputs: list[str], outputs: list[str], params: dict | None = None, **attrs) -> dict:
    return {"op": op, "inputs": inputs, "outputs": outputs, "params": params or {}, "attrs": attrs}


def bert_encoder_graph(c: BertConfig) -> dict:
    """Embeddings, then per layer: QKV, attention, output proj, add+norm, FFN, add+norm."""
    eps = c.layer_norm_eps
    nodes = [node("embed", ["input_ids", "token_type_ids", "position_ids"], ["h0"],
                  {"word": "token_embd", "position": "position_embd", "token_type": "token_type_embd",
                   "norm": "embd_norm"}, eps=eps)]
    h = "h0"
    for i in range(c.num_layers):
        b = f"blk.{i}"
        out = "last_hidden_state" if i == c.num_layers - 1 else f"h{i + 1}"
        nodes += [
            node("linear", [h], [f"qkv{i}"], {"linear": f"{b}.attn_qkv"}, activation="none"),
            node("attention", [f"qkv{i}", "seq_offsets"], [f"ctx{i}"], num_heads=c.num_heads),
            node("linear", [f"ctx{i}"], [f"ao{i}"], {"linear": f"{b}.attn_output"}, activation="none"),
            node("add_norm", [f"ao{i}", h], [f"n{i}"], {"norm": f"{b}.attn_norm"}, eps=eps),
            node("linear", [f"n{i}"], [f"up{i}"], {"linear": f"{b}.ffn_up"}, activation="gelu"),
            node("linear", [f"up{i}"], [f"down{i}"], {"linear": f"{b}.ffn_down"}, activation="none"),
            node("add_norm", [f"down{i}", f"n{i}"], [out], {"norm": f"{b}.ffn_norm"}, eps=eps),
        ]
        h = out
    if c.num_layers == 0:
        raise ValueError("a BERT encoder needs at least one layer")
    return {"inputs": list(GRAPH_INPUTS), "outputs": ["last_hidden_state"], "nodes": nodes}


def build_graph(c: BertConfig, head: dict | None) -> dict:
    """The encoder, then the head's nodes (if any) reading ``last_hidden_state``."""
    graph = bert_encoder_graph(c)
    if head is not None:
        nodes, outputs = head_nodes(c, head)
        graph["nodes"] += nodes
        graph["outputs"] += outputs
    return graph


def head_nodes(c: BertConfig, head: dict) -> tuple[list[dict], list[str]]:
    """Nodes and extra outputs of a task head (docs/format.md, "Heads")."""
    task, h = head["task"], "last_hidden_state"
    pooler = [node("first_token", [h, "seq_offsets"], ["cls_token"]),
              node("linear", ["cls_token"], ["pooler_output"], {"linear": "pooler"}, activation="tanh")]

    def mlm(out: str) -> list[dict]:
        decoder = (node("tied_linear", ["mlm_normed"], [out], {"weight": "token_embd", "bias": "mlm.decoder"})
                   if head.get("tied_decoder", True) else
                   node("linear", ["mlm_normed"], [out], {"linear": "mlm.decoder"}, activation="none"))
        return [node("linear", [h], ["mlm_hidden"], {"linear": "mlm.transform"}, activation="gelu"),
                node("norm", ["mlm_hidden"], ["mlm_normed"], {"norm": "mlm.norm"}, eps=c.layer_norm_eps),
                decoder]

    def final(x: str, prefix: str, out: str) -> dict:
        return node("linear", [x], [out], {"linear": prefix}, activation="none")

    if task == "sequence-classification":
        return pooler + [final("pooler_output", "cls", "logits")], ["pooler_output", "logits"]
    if task == "token-classification":
        return [final(h, "cls", "logits")], ["logits"]
    if task == "question-answering":
        return [final(h, "qa", "qa_logits")], ["qa_logits"]
    if task == "masked-lm":
        return mlm("logits"), ["logits"]
    if task == "next-sentence":
        return pooler + [final("pooler_output", "nsp", "logits")], ["pooler_output", "logits"]
    if task == "pretraining":
        return (pooler + mlm("prediction_logits") + [final("pooler_output", "nsp", "seq_relationship_logits")],
                ["pooler_output", "prediction_logits", "seq_relationship_logits"])
    raise ValueError(f"unknown head task {task!r}")
