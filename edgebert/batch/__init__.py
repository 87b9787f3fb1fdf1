"""Offline batch scoring: stream a corpus through a model into one output file, resumable.

    from edgebert.batch import JobSpec, run_job
    run_job(JobSpec("minilm.edgebert", "records.jsonl", "vectors.parquet", fields=Fields(text="body")))

``edgebert embed|classify|ner MODEL --input ... --output ...`` is the same job from the
command line; ``--engine ray`` runs it on Ray Data instead (``ray_engine.py``).
"""
from .job import JobSpec, run_job
from .sources import Fields

__all__ = ["Fields", "JobSpec", "run_job"]
