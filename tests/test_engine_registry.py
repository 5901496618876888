"""One engine registry: the check spec, `pv check --engine`, the runner and the schema agree with it."""

from __future__ import annotations

import argparse
import importlib

from pv.contracts.checkspec import check_issues
from pv.contracts.engines import ENGINE_NAMES, ENGINES
from pv.contracts.schema import CHECK_SCHEMA, resources


def test_the_schema_lists_exactly_the_registered_engines() -> None:
    assert tuple(resources()[CHECK_SCHEMA]["$defs"]["engine"]["enum"]) == ENGINE_NAMES


def test_pv_check_offers_exactly_the_registered_engines() -> None:
    from pv.cli import check

    parser = argparse.ArgumentParser()
    check.add_arguments(parser)
    (engine,) = [action for action in parser._actions if action.dest == "engine"]
    assert tuple(engine.choices) == ENGINE_NAMES


def test_every_registered_engine_has_a_runner() -> None:
    for engine in ENGINES.values():
        assert callable(importlib.import_module(engine.module).run), engine.name


def test_an_unknown_engine_is_named_with_the_registered_ones() -> None:
    issues = check_issues({"given": {"a": "bool"}, "expect": "a or not a", "engine": "z3"}, {})
    assert [issue.message for issue in issues] == [f"unknown engine 'z3' (one of: {', '.join(ENGINE_NAMES)})"]
