"""edgebert against ONNX Runtime and PyTorch (see README.md beside this file)."""
import os

# The environment as the benchmark started, before any module imported edgebert,
# which sets GOMP_SPINCOUNT for its own OpenMP pool. Every engine's process (workers,
# cold-start children) starts from this, so no engine runs under another's settings.
START_ENV = dict(os.environ)
