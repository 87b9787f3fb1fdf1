"""Prometheus metrics of one server (its own registry, so two servers in a process do not mix)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKENS = (16, 64, 256, 1024, 4096, 16384, 65536)


PER_MODEL_HISTOGRAMS = {  # attribute: (metric name, help, buckets)
    "batch_requests": ("edgebert_batch_requests", "requests gathered into one batch", COUNTS),
    "batch_sequences": ("edgebert_batch_sequences", "texts in one gathered batch", COUNTS),
    "batch_tokens": ("edgebert_batch_tokens", "tokens in one gathered batch", TOKENS),
    "queue_seconds": ("edgebert_queue_seconds", "time a request waited for the model", SECONDS),
    "inference_seconds": ("edgebert_inference_seconds", "time of one batch's forward passes", SECONDS),
}


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        r = self.registry = CollectorRegistry()
        self.requests = Counter("edgebert_requests", "HTTP requests answered, by route and status",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("edgebert_request_seconds", "time to answer a request, by route",
                                         ["route"], buckets=SECONDS, registry=r)
        for attr, (name, text, buckets) in PER_MODEL_HISTOGRAMS.items():
            setattr(self, attr, Histogram(name, text, ["model"], buckets=buckets, registry=r))
        self.tokens = Counter("edgebert_tokens", "tokens run through the model (rate() gives tokens/s)",
                              ["model"], registry=r)
        self.queued = Gauge("edgebert_queue_depth", "requests waiting for the model", ["model"], registry=r)
        self.dropped = Counter("edgebert_dropped_requests", "queued requests dropped before running "
                               "(client gone or timed out)", ["model"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
