"""One error hierarchy for everything edgebert refuses.

Every message says what was wrong and where (file, tensor, text index), so a
user can act on it without reading our source. Validation raises these, never
``assert`` (asserts vanish under ``python -O``).
"""


class EdgebertError(Exception):
    """Base class of every error edgebert raises on purpose."""


class InvalidModelFile(EdgebertError, ValueError):
    """A model file is malformed, truncated, corrupted or lies about itself."""


class UnsupportedModel(EdgebertError, ValueError):
    """A source model (architecture, activation, dtype) we cannot convert."""


class InputError(EdgebertError, ValueError):
    """Bad input to the API: wrong type, dtype, shape, empty or over-long text."""
