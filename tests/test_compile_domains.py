"""Input domains and engine selection: sizes, enumeration order, strategies within bounds."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings

from pv.contracts.engines import select_engines
from pv.contracts.domains import DomainError, parse_domain


def test_sizes_and_simplest_first_enumeration():
    ints = parse_domain({"int": {"min": -2, "max": 3}})
    assert ints.size() == 6 and list(ints.values()) == [0, 1, -1, 2, -2, 3]
    optional = parse_domain({"optional": {"of": {"choice": {"values": ["a", "b"]}}}})
    assert optional.size() == 3 and list(optional.values()) == [None, "a", "b"]
    lists = parse_domain({"list": {"of": "bool", "min_len": 1, "max_len": 2}})
    assert lists.size() == 2 + 4 and list(lists.values())[:3] == [[False], [True], [False, False]]
    assert parse_domain("float").size() is None and parse_domain({"int": {"min": 0}}).size() is None


@pytest.mark.parametrize(
    "given, engines",
    [
        ({"a": {"int": {"min": 0, "max": 99}}, "b": "bool"}, ("exhaustive",)),
        ({"a": {"int": {"min": 0, "max": 10**6}}, "b": "bool"}, ("hypothesis", "crosshair")),
        ({"a": {"list": {"of": "int"}}}, ("hypothesis", "crosshair")),
        ({"t": {"tensor": {"shape": [2, {"min": 1, "max": 3}]}}, "b": "bool"}, ("hypothesis",)),
        ({"xs": {"list": {"of": "float"}}}, ("hypothesis",)),
        ({"x": "float", "n": {"int": {"min": 0}}}, ("hypothesis",)),
        ({"c": {"optional": {"of": "int"}}}, ("hypothesis", "crosshair")),
    ],
)
def test_engines_follow_the_input_types(given, engines):
    domains = {name: parse_domain(spec) for name, spec in given.items()}
    assert select_engines(domains) == engines


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"int": {"min": 1.5}}, "min must be a number"),
        ({"float": {"width": 8}}, "width must be one of"),
        ({"choice": {"values": []}}, "non-empty list"),
        ({"list": {"max_len": 3}}, "needs 'of'"),
        ({"tensor": {"shape": [100000, 100]}}, "more than 65536 elements"),
        ({"tensor": {"shape": [2], "device": "tpu"}}, "device must be one of"),
        ({"int": {}, "bool": {}}, "exactly one key"),
        ("complex", "unknown domain"),
    ],
)
def test_bad_domains_say_what_is_wrong(spec, message):
    with pytest.raises(DomainError, match=message):
        parse_domain(spec)


TENSOR = parse_domain({"tensor": {"dtype": "bfloat16", "shape": [{"min": 1, "max": 3}, 4],
                                  "elements": {"min": -2, "max": 2}}})
FLOAT = parse_domain({"float": {"min": -1, "max": 1, "allow_nan": True, "width": 32}})


@settings(max_examples=30, derandomize=True, database=None, deadline=None)
@given(tensor=TENSOR.strategy(), number=FLOAT.strategy())
def test_strategies_stay_inside_their_domains(tensor, number):
    import torch

    assert tensor.dtype == torch.bfloat16 and tensor.shape[1] == 4 and 1 <= tensor.shape[0] <= 3
    assert bool(((tensor >= -2) & (tensor <= 2)).all())
    assert math.isnan(number) or -1 <= number <= 1


def test_crosshair_sees_a_choice_as_its_index():
    choice = parse_domain({"optional": {"of": {"choice": {"values": ["dequant", "q4k-native"]}}}})
    assert choice.admits(None) and choice.admits(1) and not choice.admits(2)
    assert [choice.convert(raw) for raw in (None, 0, 1)] == [None, "dequant", "q4k-native"]
