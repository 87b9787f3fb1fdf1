"""Converters: trained BERT checkpoints -> one int8 ``.edgebert`` file."""
from .pipeline import convert, load
from .registry import supported_architectures

__all__ = ["convert", "load", "supported_architectures"]
