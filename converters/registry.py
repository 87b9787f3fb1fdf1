"""Loaders registered by the source's architecture name (config.json ``architectures``)."""
from __future__ import annotations

from typing import Callable

from edgebert.errors import UnsupportedModel

_LOADERS: dict[str, Callable] = {}


def register_loader(*architectures: str):
    """Decorator: ``@register_loader("BertModel")`` makes a loader findable."""
    def wrap(fn):
        for arch in architectures:
            _LOADERS[arch] = fn
        return fn
    return wrap


def supported_architectures() -> list[str]:
    return sorted(_LOADERS)


def get_loader(architecture: str) -> Callable:
    try:
        return _LOADERS[architecture]
    except KeyError:
        raise UnsupportedModel(
            f"architecture {architecture!r} is not supported; supported: "
            f"{', '.join(supported_architectures())}") from None
