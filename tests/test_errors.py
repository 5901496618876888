"""One error root: every error class pv defines derives from ``PvError`` and keeps the built-in
base its callers catch; the CLI turns any of them into one message and an exit status."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import pv
from pv._util.errors import InvalidValue, PvError, UserError


def _pv_error_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(pv.__path__, "pv."):
        if info.name == "pv.__main__":
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (inspect.isclass(value) and issubclass(value, BaseException) and name.endswith("Error") and not name.startswith("_")
                    and value.__module__ == module.__name__):
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_error_pv_defines_has_the_one_root() -> None:
    classes = _pv_error_classes()
    assert len(classes) >= 8, sorted(classes)
    assert [name for name, cls in classes.items() if not issubclass(cls, PvError)] == []


@pytest.mark.parametrize("name,builtin", [
    ("pv.contracts.domains.DomainError", ValueError),
    ("pv.contracts.expr.ExpressionError", ValueError),
    ("pv.contracts.expr_helpers.HelperError", ValueError),
    ("pv.checks.evaluation.BindingError", RuntimeError),
])
def test_errors_keep_the_builtin_base_callers_catch(name: str, builtin: type) -> None:
    module, _, cls = name.rpartition(".")
    error = getattr(importlib.import_module(module), cls)
    assert issubclass(error, PvError) and issubclass(error, builtin)


def test_the_cli_reports_any_pv_error_as_one_line(monkeypatch, capsys) -> None:
    from pv import cli
    from pv.checks.evaluation import BindingError

    def fail(args):
        raise BindingError("module os is not allowed")

    monkeypatch.setattr(importlib.import_module("pv.cli.status"), "run", fail)
    assert cli.main(["status", "x.yaml"]) == PvError.exit_code
    err = capsys.readouterr().err
    assert err == "pv status: error: module os is not allowed\n"


def test_user_error_and_invalid_value_are_pv_errors() -> None:
    assert issubclass(UserError, PvError) and UserError("x", exit_code=1).exit_code == 1
    assert issubclass(InvalidValue, ValueError)
