"""Text in, token ids out: validation of user text and the file's own tokenizer.

Tokenization is HF ``tokenizers`` (the tokenizer.json stored in the model
file). No padding: sequences are packed by real length downstream.
"""
from __future__ import annotations

from typing import Iterable, Sequence

from tokenizers import Tokenizer

from .errors import InputError, InvalidModelFile


def as_text(item: object, index: int) -> str:
    """A str ready for the tokenizer, or a clear InputError naming the text's index."""
    if isinstance(item, (bytes, bytearray)):
        try:
            item = bytes(item).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"text {index}: bytes are not valid UTF-8 (byte {e.start}: {e.reason})") from None
    if not isinstance(item, str):
        raise InputError(f"text {index}: expected str, got {type(item).__name__}")
    try:
        item.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InputError(f"text {index}: character {e.start} is a lone surrogate ({e.reason}); "
                         "texts must be valid Unicode") from None
    return item


class TextEncoder:
    """Wraps the model's tokenizer with its truncation length."""

    def __init__(self, tokenizer_json: str, max_length: int):
        try:
            self.tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as e:  # the tokenizers library raises plain Exception
            raise InvalidModelFile(f"the tokenizer inside the model file cannot be loaded ({e})") from None
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        # A second instance truncates as the model's own tokenizer does (specials kept).
        self.truncating = Tokenizer.from_str(tokenizer_json)
        self.truncating.no_padding()
        self.truncating.enable_truncation(max_length)
        self.max_length = max_length

    def encode(self, texts: Sequence[str], first_index: int = 0, truncate: bool = True
               ) -> list[tuple[list[int], list[int]]]:
        """(ids, type_ids) per text; over-long texts are cut to max_length or refused."""
        tokenizer = self.truncating if truncate else self.tokenizer
        encodings = tokenizer.encode_batch(list(texts))
        out = []
        for i, enc in enumerate(encodings):
            if len(enc.ids) > self.max_length:
                raise InputError(f"text {first_index + i} has {len(enc.ids)} tokens, more than the model's "
                                 f"maximum of {self.max_length}; pass truncate=True to cut it")
            out.append((enc.ids, enc.type_ids))
        return out


def chunks(items: Iterable, size: int):
    """Yield lists of at most ``size`` items, streaming (bounded memory for huge inputs)."""
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
