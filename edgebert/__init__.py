"""edgebert: quantized BERT inference on ordinary CPUs.

    import edgebert
    model = edgebert.load("all-MiniLM-L6-v2.edgebert")
    vectors = model.embed(["A sentence.", "Another one."])   # (2, 384) float32
    ner = edgebert.pipeline("ner", model="ner.edgebert")      # transformers' pipeline conventions
"""
import os

__version__ = "0.1.0"

# Numba's OpenMP workers must not spin while idle: a desktop app that is not
# running inference should use no CPU. Set before Numba starts its pool; a
# value the user chose wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .errors import EdgebertError, InputError, InvalidModelFile, UnsupportedModel
from .model import Model, load
from .pipelines import pipeline, supported_tasks

__all__ = ["load", "Model", "pipeline", "supported_tasks", "EdgebertError", "InputError", "InvalidModelFile", "UnsupportedModel"]
