"""Text in, token ids out: validation of user text and the file's own tokenizer.

Tokenization is HF ``tokenizers`` (the tokenizer.json stored in the model
file). No padding: sequences are packed by real length downstream.
"""
from __future__ import annotations

import json
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


# A prefix of this many characters per allowed token is tokenized first (a
# BERT token covers at least one character, usually four or more).
CHARS_PER_TOKEN_BOUND = 16
EXACT_COUNT_CHARS = 100_000  # longer refused texts get a lower bound, not a full tokenization


# The tokenizer inside a model file is attack surface (hostile regexes can
# backtrack for ever): only the components the BERT family's tokenizers are made
# of load (WordPiece; byte-level BPE for RoBERTa; SentencePiece Unigram for
# XLM-R/CamemBERT), none taking a pattern except Replace with one of SAFE_PATTERNS.
ALLOWED_COMPONENTS = {
    "model": {"WordPiece", "WordLevel", "BPE", "Unigram"},
    "normalizer": {"BertNormalizer", "Sequence", "NFD", "NFKD", "NFC", "NFKC", "Lowercase", "StripAccents", "Strip",
                   "Precompiled", "Replace"},
    "pre_tokenizer": {"BertPreTokenizer", "Sequence", "Whitespace", "WhitespaceSplit", "Punctuation", "Digits",
                      "ByteLevel", "Metaspace"},
    "post_processor": {"TemplateProcessing", "BertProcessing", "RobertaProcessing", "ByteLevel"},
    "decoder": {"WordPiece", "ByteLevel", "Metaspace"},
}
# Replace normalizers' patterns: plain strings, or these regexes (XLM-R's tokenizer.json squeezes spaces).
SAFE_PATTERNS = ({"Regex": " {2,}"},)
# Bump when the checks below change: tokenizers remembered as checked are then checked again.
CHECK_VERSION = 1


def check_tokenizer(tokenizer_json: str, vocab_size: int | None = None) -> None:
    """Refuse a tokenizer.json with components outside ``ALLOWED_COMPONENTS`` or ids beyond the vocabulary.

    A tokenizer that passed is remembered by its SHA-256 (``$EDGEBERT_CACHE/checked-tokenizers``): the
    check parses the whole JSON in Python (about 50 ms for a BERT vocabulary, a tenth of a cold start),
    and a process that loads the same model again skips it. The cache lives beside the native kernel
    library this process may load and run, so trusting it adds no one who could not already do more.
    """
    marker = _checked_marker(tokenizer_json, vocab_size)
    if marker is not None and marker.exists():
        return
    _check_tokenizer(tokenizer_json, vocab_size)
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
        except OSError:
            pass  # a read-only cache only costs the check next time


def top_level_value(document: str, key: str, default=None):
    """``json.loads(document)[key]`` for a JSON object, decoding members in order only up to ``key``.

    tokenizer.json puts its small settings (truncation, padding, ...) before the vocabulary, so
    reading one of them this way skips parsing a 500 KB model section (about 30-60 ms). Raises
    ValueError where ``document`` is not a JSON object, as json.loads does.
    """
    decoder, ws = json.JSONDecoder(), " \t\n\r"
    i = len(document) - len(document.lstrip(ws))
    if document[i:i + 1] != "{":
        raise ValueError("not a JSON object")
    i += 1
    while True:
        while i < len(document) and document[i] in ws + ",":
            i += 1
        if document[i:i + 1] == "}":
            return default
        name, i = decoder.raw_decode(document, i)
        while i < len(document) and document[i] in ws:
            i += 1
        if document[i:i + 1] != ":" or not isinstance(name, str):
            raise ValueError("malformed JSON object")
        i += 1
        while i < len(document) and document[i] in ws:
            i += 1
        value, i = decoder.raw_decode(document, i)
        if name == key:
            return value


def _checked_marker(tokenizer_json: str, vocab_size: int | None):
    import hashlib

    from .settings import cache_root

    digest = hashlib.sha256(f"{vocab_size}|{CHECK_VERSION}|".encode() + tokenizer_json.encode("utf-8", "surrogatepass"))
    return cache_root() / "checked-tokenizers" / digest.hexdigest()


def _check_tokenizer(tokenizer_json: str, vocab_size: int | None) -> None:
    try:
        spec = json.loads(tokenizer_json)
    except (ValueError, RecursionError) as e:
        raise InvalidModelFile(f"the tokenizer inside the model file is not valid JSON ({e})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
        raise InvalidModelFile("the tokenizer inside the model file has no model section")
    for key, allowed in ALLOWED_COMPONENTS.items():
        for kind in _component_types(spec.get(key)):
            if kind not in allowed:
                raise InvalidModelFile(f"tokenizer {key} type {kind!r} is not allowed; allowed: {sorted(allowed)}")
    for pattern in _replace_patterns(spec.get("normalizer")):
        if not (isinstance(pattern, dict) and set(pattern) == {"String"}) and pattern not in SAFE_PATTERNS:
            raise InvalidModelFile(f"tokenizer Replace pattern {str(pattern)[:80]!r} is not allowed; allowed: "
                                   f"plain strings, {SAFE_PATTERNS}")
    vocab = spec["model"].get("vocab")
    if vocab_size is not None and isinstance(vocab, dict) and vocab:
        ids = [v for v in vocab.values() if isinstance(v, int)]
        if len(ids) != len(vocab) or min(ids) < 0 or max(ids) >= vocab_size:
            raise InvalidModelFile(f"tokenizer vocabulary ids must be integers in 0..{vocab_size - 1}")
    if vocab_size is not None and isinstance(vocab, list) and len(vocab) > vocab_size:  # Unigram: [piece, score]
        raise InvalidModelFile(f"tokenizer vocabulary has {len(vocab)} pieces, more than the model's {vocab_size}")


def _replace_patterns(section) -> list:
    """The ``pattern`` of every Replace normalizer in a section, nested Sequences included."""
    if not isinstance(section, dict):
        return []
    found = [section.get("pattern")] if section.get("type") == "Replace" else []
    for child in section.get("normalizers") or []:
        found += _replace_patterns(child)
    return found


def _component_types(section) -> list[str]:
    """Every "type" in a tokenizer.json section, nested Sequences included."""
    if section is None:
        return []
    if not isinstance(section, dict):
        return ["<not an object>"]
    kinds = [str(section.get("type"))]
    for key in ("normalizers", "pretokenizers", "processors", "decoders"):
        for child in section.get(key) or []:
            kinds += _component_types(child)
    return kinds


class TextEncoder:
    """Wraps the model's tokenizer with its truncation length."""

    def __init__(self, tokenizer_json: str, max_length: int, vocab_size: int | None = None):
        check_tokenizer(tokenizer_json, vocab_size)
        self._json = tokenizer_json
        self._plain: Tokenizer | None = None
        # Truncates as the model's own tokenizer does (specials kept); its
        # ``overflowing`` says whether a text was cut.
        self.truncating = _load(tokenizer_json)
        self.truncating.no_padding()
        self.truncating.enable_truncation(max_length)
        self.max_length = max_length

    @property
    def tokenizer(self) -> Tokenizer:
        """A second instance without truncation, made on first use (offsets, exact lengths)."""
        if self._plain is None:
            self._plain = _load(self._json)
            self._plain.no_padding()
            self._plain.no_truncation()
        return self._plain

    def encode(self, texts: Sequence[str], first_index: int = 0, truncate: bool = True
               ) -> list[tuple[list[int], list[int]]]:
        """(ids, type_ids) per text; over-long texts are cut to max_length or refused.

        A very long text is tokenized from a prefix cut at whitespace: BERT's
        tokenization is word-local, so when the prefix alone fills the model,
        its tokens are the full text's first tokens and the truncated result
        is the same, without tokenizing megabytes that would be thrown away.
        """
        limit = CHARS_PER_TOKEN_BOUND * self.max_length
        cut = [_prefix_at_whitespace(t, limit) for t in texts]
        encodings = self.truncating.encode_batch(cut)
        out = []
        for i, enc in enumerate(encodings):
            overflowed = bool(enc.overflowing)
            if cut[i] is not texts[i] and not overflowed:
                enc = self.truncating.encode(texts[i])  # the prefix did not fill the model: use all of it
                overflowed = bool(enc.overflowing)
            if overflowed and not truncate:
                full = len(self.tokenizer.encode(texts[i]).ids) if len(texts[i]) <= EXACT_COUNT_CHARS else None
                size = f"{full} tokens" if full is not None else f"more than {self.max_length} tokens " \
                    f"({len(texts[i])} characters)"
                raise InputError(f"text {first_index + i} has {size}, more than the model's maximum of "
                                 f"{self.max_length}; pass truncate=True to cut it")
            out.append((enc.ids, enc.type_ids))
        return out


def _load(tokenizer_json: str) -> Tokenizer:
    try:
        return Tokenizer.from_str(tokenizer_json)
    except Exception as e:  # the tokenizers library raises plain Exception
        raise InvalidModelFile(f"the tokenizer inside the model file cannot be loaded ({e})") from None


def _prefix_at_whitespace(text: str, limit: int) -> str:
    """``text`` itself when short; else its start up to the last whitespace before ``limit``."""
    if len(text) <= limit:
        return text
    cut = max(text.rfind(" ", 0, limit), text.rfind("\n", 0, limit), text.rfind("\t", 0, limit))
    return text[:cut] if cut > 0 else text


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
