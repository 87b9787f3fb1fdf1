"""edgebert: quantized BERT inference on ordinary CPUs.

    import edgebert
    model = edgebert.load("all-MiniLM-L6-v2.edgebert")
    vectors = model.embed(["A sentence.", "Another one."])   # (2, 384) float32
"""
from .errors import EdgebertError, InputError, InvalidModelFile, UnsupportedModel
from .model import Model, load

__version__ = "0.1.0"
__all__ = ["load", "Model", "EdgebertError", "InputError", "InvalidModelFile", "UnsupportedModel"]
