"""``edgebert serve``: a local HTTP server for embeddings, reranking and classification.

OpenAI-compatible (``/v1/embeddings``, ``/v1/models``) and text-embeddings-inference
compatible (``/embed``, ``/rerank``, ``/predict``, ``/tokenize``, ``/info``), with
``/health``, ``/metrics`` (Prometheus) and ``/openapi.json``. Concurrent embedding
requests are gathered into one batch per model (``batching.py``); request bodies are
declared with the pipelines' typed options (``schemas.py``).

Needs the ``serve`` extra (starlette, uvicorn, prometheus-client); importing this
package does not, so the command line works without it.
"""
from .command import add_serve_parser

__all__ = ["add_serve_parser"]
