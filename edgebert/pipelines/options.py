"""Pipeline options, declared once: the checks, the CLI flags and the JSON schema come from here.

Each pipeline lists its call options as ``options = (Int("top_k", ...), ...)``. One
declaration gives

- ``check``: the value as the pipeline uses it, or an :class:`InputError` naming the option;
- ``add_to``: its ``argparse`` flag for the task commands (``edgebert classify --top-k 2``);
- ``json_schema``: its JSON Schema, for a request body (a server, a config file).

Options that only make sense in Python (a dict of tokenizer settings) say ``cli=False``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError


class _Unset:
    """The default of an option whose absence means something (text-classification's top_k)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(frozen=True)
class Option:
    name: str
    default: Any = None
    help: str = ""
    nullable: bool = False  # None is a valid value (beside the default)
    cli: bool = True
    aliases: tuple[str, ...] = ()  # more flags for it on the command line ("--truncate")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def check(self, value):
        """The value as the pipeline uses it; the declared default passes unchanged."""
        if value is self.default or (value is None and self.nullable):
            return value
        return self.convert(value)

    def convert(self, value):
        raise NotImplementedError

    def fail(self, what: str, value):
        raise InputError(f"{self.name} must be {what}{' or None' if self.nullable else ''}, got {value!r}")

    def add_to(self, parser: argparse.ArgumentParser, default=UNSET, aliases: tuple[str, ...] = ()) -> None:
        """Its flag on a task command; ``default`` (the command's own, if it differs) is shown in the help."""
        default = self.default if default is UNSET else default
        text = f"{self.help} (default: {default})" if default not in (None, UNSET) else self.help
        parser.add_argument(self.flag, *self.aliases, *aliases, dest=self.name, default=default, help=text,
                            **self.argparse())

    def argparse(self) -> dict:
        return {"type": self.parse}

    def parse(self, text: str):
        """A command-line value; argparse reports the error under the flag's name."""
        try:
            return self.convert(text)
        except InputError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    def json_schema(self) -> dict:
        schema = self.schema()
        if self.nullable:
            schema = {"anyOf": [schema, {"type": "null"}]}
        if self.default not in (None, UNSET):
            schema["default"] = self.default
        return {**schema, "description": self.help}

    def schema(self) -> dict:
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Option):
    low: int = 0
    what: str = ""  # how the error names a valid value; "an integer >= low" unless said

    def convert(self, value):
        if isinstance(value, str):  # from the command line
            try:
                value = int(value)
            except ValueError:
                self.fail(self.what or f"an integer >= {self.low}", value)
        if isinstance(value, bool) or not isinstance(value, int) or value < self.low:
            self.fail(self.what or f"an integer >= {self.low}", value)
        return value

    def schema(self) -> dict:
        return {"type": "integer", "minimum": self.low}


class _Typed(Option):
    """A value of one Python type, one JSON type."""

    pytype: type = object
    json_type = ""
    what = ""

    def convert(self, value):
        if not isinstance(value, self.pytype):
            self.fail(self.what, value)
        return value

    def schema(self) -> dict:
        return {"type": self.json_type}


@dataclass(frozen=True)
class Bool(_Typed):
    pytype, json_type, what = bool, "boolean", "True or False"

    def argparse(self) -> dict:
        # --flag / --no-flag; absent keeps the default (None stays "not given")
        return {"action": argparse.BooleanOptionalAction}


@dataclass(frozen=True)
class Choice(Option):
    """One of ``choices``, in any case ("SIMPLE"), as transformers takes these names."""

    choices: tuple[str, ...] = ()

    def convert(self, value):
        if isinstance(value, str) and value.lower() in self.choices:
            return value.lower()
        self.fail(f"one of {self.choices}", value)

    def argparse(self) -> dict:
        return {"type": str.lower, "choices": self.choices}

    def schema(self) -> dict:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Text(_Typed):
    pytype, json_type, what = str, "string", "a string"


@dataclass(frozen=True)
class Texts(Option):
    """A list of strings; a single string is one item, or (``comma``) comma-separated items."""

    comma: bool = False

    def convert(self, value):
        if isinstance(value, str):
            return [x.strip() for x in value.split(",") if x.strip()] if self.comma else [value]
        if not isinstance(value, (list, tuple, set, frozenset)) or not all(isinstance(x, str) for x in value):
            self.fail("a list of strings" + (" or a comma-separated string" if self.comma else ""), value)
        return list(value)

    def argparse(self) -> dict:
        return {"type": lambda s: [x.strip() for x in s.split(",") if x.strip()],
                "metavar": "A,B,..."}

    def schema(self) -> dict:
        return {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]}


@dataclass(frozen=True)
class Truncation(Option):
    """transformers' ``truncation``: True, False or "longest_first" (the only strategy we run)."""

    def convert(self, value):
        if not (isinstance(value, bool) or value == "longest_first"):
            self.fail("True, False or 'longest_first'", value)
        return value

    def argparse(self) -> dict:
        return {"action": "store_const", "const": True}

    def schema(self) -> dict:
        return {"anyOf": [{"type": "boolean"}, {"const": "longest_first"}]}


@dataclass(frozen=True)
class Settings(Option):
    """A dict of tokenizer settings (``tokenize_kwargs``): only ``keys``, each checked by its option."""

    keys: tuple[Option, ...] = field(default_factory=tuple)

    def convert(self, value):
        if not isinstance(value, dict):
            self.fail("a dict", value)
        known = {o.name: o for o in self.keys}
        unknown = sorted(set(value) - set(known))
        if unknown:
            raise InputError(f"{self.name}: only {' and '.join(known)} are supported, got {unknown}")
        return {k: known[k].check(v) for k, v in value.items()}

    def schema(self) -> dict:
        return {"type": "object", "additionalProperties": False,
                "properties": {o.name: o.json_schema() for o in self.keys}}


# ---- the options several pipelines share ----------------------------------------------
def top_k(default=1, nullable=False, help="how many results per input, best first") -> Int:
    return Int("top_k", default, help, nullable=nullable, low=1, what="a positive integer")


def max_length(help="cut to this many tokens (implies truncation)") -> Int:
    return Int("max_length", None, help, nullable=True, low=2)


def truncation(default=None, help="cut inputs longer than the model's maximum instead of refusing them") -> Truncation:
    return Truncation("truncation", default, help, nullable=True, aliases=("--truncate",))


def tokenizer_settings(name: str) -> Settings:
    return Settings(name, None, "tokenizer settings: {truncation, max_length}", nullable=True, cli=False,
                    keys=(truncation(), max_length()))


def resolve(options: tuple[Option, ...], given: dict, task: str) -> dict:
    """Every declared option checked, defaults filled in; an unknown name lists the known ones."""
    known = {o.name: o for o in options}
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise InputError(f"{task} has no option {', '.join(map(repr, unknown))}; "
                         f"its options: {', '.join(known) or 'none'}")
    return {name: o.check(given[name]) if name in given else o.default for name, o in known.items()}


def json_schema(options: tuple[Option, ...]) -> dict:
    """The JSON Schema of a request's options object."""
    return {"type": "object", "additionalProperties": False,
            "properties": {o.name: o.json_schema() for o in options}}
