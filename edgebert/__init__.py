"""edgebert: quantized BERT inference on ordinary CPUs.

    import edgebert
    model = edgebert.load("all-MiniLM-L6-v2.edgebert")
    vectors = model.embed(["A sentence.", "Another one."])   # (2, 384) float32
    ner = edgebert.pipeline("ner", model="ner.edgebert")      # transformers' pipeline conventions
"""
from .errors import EdgebertError, InputError, InvalidModelFile, UnsupportedModel
from .model import Model, load
from .pipelines import pipeline, supported_tasks

__version__ = "0.1.0"
__all__ = ["load", "Model", "pipeline", "supported_tasks", "EdgebertError", "InputError", "InvalidModelFile", "UnsupportedModel"]
