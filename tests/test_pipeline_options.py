"""Pipeline options are declared once: the checks, the CLI flags and the JSON schema agree."""
from __future__ import annotations

import inspect
import json

import jsonschema
import pytest

import edgebert
from edgebert.cli import _parser, main
from edgebert.cli_tasks import COMMANDS
from edgebert.errors import InputError
from edgebert.pipelines import TASKS, options_schema, pipeline_class
from edgebert.pipelines.options import UNSET, Settings

# Values tried on every option of every pipeline: each is either accepted by the
# option's check and its JSON schema, or refused by both.
PROBES = [None, True, False, 0, 1, 2, 7, -1, 2.5, "", "simple", "SIGMOID", "longest_first", "a,b",
          "This is {}.", ["a", "b"], [1], {}, {"max_length": 8}, {"padding": True}]


def _classes():
    return sorted({pipeline_class(t) for t in TASKS}, key=lambda c: c.task)


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.task)
def test_process_takes_exactly_the_declared_options(cls):
    """``process`` gets every declared option by name and nothing undeclared."""
    params = list(inspect.signature(cls.process).parameters)[2:]  # self, items
    assert params == [o.name for o in cls.options]


@pytest.mark.parametrize("cls", _classes(), ids=lambda c: c.task)
def test_schema_and_check_agree(cls):
    schema = options_schema(cls.task)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert list(schema["properties"]) == [o.name for o in cls.options]
    for option in cls.options:
        for value in PROBES:
            if value is option.default or value is None and option.nullable:
                continue  # the default passes unchecked
            try:
                option.check(value)
                accepted = True
            except InputError as e:
                assert option.name in str(e)
                accepted = False
            valid = jsonschema.Draft202012Validator(schema["properties"][option.name]).is_valid(value)
            # a Choice takes any case (transformers does); the schema names the canonical spelling
            case_only = isinstance(value, str) and value.lower() in option.schema().get("enum", ())
            assert accepted == valid or (accepted and case_only), (option.name, value, accepted, valid)


def test_unknown_option_lists_the_known_ones(tiny_head):
    path = tiny_head("BertForMaskedLM", "int8")
    fill = edgebert.pipeline("fill-mask", model=path)
    with pytest.raises(InputError, match=r"fill-mask has no option 'topk'; its options: top_k, targets"):
        fill("Paris is the [MASK] of France.", topk=3)
    with pytest.raises(InputError, match="fill-mask has no option 'aggregation_strategy'"):
        edgebert.pipeline("fill-mask", model=path, aggregation_strategy="simple")  # at construction
    with pytest.raises(InputError, match=r"top_k must be a positive integer, got 0"):
        edgebert.pipeline("fill-mask", model=path, top_k=0)


def test_checked_values_reach_the_pipeline(tiny_head):
    ner = edgebert.pipeline("ner", model=tiny_head("BertForTokenClassification", "int8", num_labels=5))
    text = "Ana lives in Paris."
    assert ner(text, aggregation_strategy="FIRST") == ner(text, aggregation_strategy="first")
    assert ner(text, ignore_labels="O") == ner(text, ignore_labels=["O"])
    with pytest.raises(InputError, match=r"aggregation_strategy must be one of \('none', 'simple'"):
        ner(text, aggregation_strategy="mean")
    with pytest.raises(InputError, match="ignore_labels must be a list of strings"):
        ner(text, ignore_labels=[0])


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_cli_flags_come_from_the_options(command):
    sub = next(a for a in _parser()._actions if a.dest == "command").choices[command.name]
    flags = {a.dest: a.option_strings for a in sub._actions}
    for option in pipeline_class(command.task).options:
        if not option.cli:
            assert option.name not in flags
            continue
        assert option.flag in flags[option.name]
        assert sub.get_default(option.name) == command.defaults.get(option.name, option.default)
    assert all(isinstance(o, Settings) for o in pipeline_class(command.task).options if not o.cli)


def test_cli_zero_shot_and_checked_flags(tiny_head, capsys):
    path = tiny_head("BertForSequenceClassification", "int8", num_labels=3,
                     id2label={0: "contradiction", 1: "neutral", 2: "entailment"})
    args = ["zero-shot", str(path), "a film about the sea", "--candidate-labels", "ocean, cinema",
            "--multi-label", "--hypothesis-template", "It is about {}."]
    assert main(args) == 0
    got = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pipe = edgebert.pipeline("zero-shot-classification", model=path)
    assert got == [pipe("a film about the sea", ["ocean", "cinema"], multi_label=True,
                        hypothesis_template="It is about {}.")]
    with pytest.raises(SystemExit) as e:
        main(["classify", str(path), "x", "--top-k", "0"])
    assert e.value.code == 2
    assert "argument --top-k: top_k must be a positive integer" in capsys.readouterr().err


def test_unset_top_k_keeps_transformers_legacy_output(tiny_head):
    clf = edgebert.pipeline("text-classification", model=tiny_head("BertForSequenceClassification", "int8",
                                                                   num_labels=3))
    assert pipeline_class("text-classification").options[0].default is UNSET
    legacy, ranked = clf("good"), clf("good", top_k=None)
    assert isinstance(legacy, list) and legacy[0]["label"] == ranked[0]["label"] and len(ranked) == 3
