"""edgebert: quantized BERT inference on ordinary CPUs.

    import edgebert
    model = edgebert.load("all-MiniLM-L6-v2.edgebert")
    vectors = model.embed(["A sentence.", "Another one."])   # (2, 384) float32
    ner = edgebert.pipeline("ner", model="ner.edgebert")      # transformers' pipeline conventions
"""
import os

__version__ = "0.1.0"

# Numba's OpenMP (libgomp) workers: spin briefly between the back-to-back
# kernels of one forward pass (waking a sleeping thread costs tens of
# microseconds per kernel), then sleep, so an app that is not running
# inference uses no CPU. 100,000 spins measured: 1x128 MiniLM 6.6 ms instead
# of 11.3 ms fully passive, 3 ms of CPU over the idle second after the call
# (ONNX Runtime's default keeps spinning). Set before Numba starts its pool;
# a choice the user made (OMP_WAIT_POLICY or GOMP_SPINCOUNT) wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "100000"

from .errors import EdgebertError, InputError, InvalidModelFile, UnsupportedModel
from .model import Model, load
from .pipelines import pipeline, supported_tasks

__all__ = ["load", "Model", "pipeline", "supported_tasks", "EdgebertError", "InputError", "InvalidModelFile", "UnsupportedModel"]
