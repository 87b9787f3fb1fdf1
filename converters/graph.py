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
