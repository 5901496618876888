"""Loading the compiler's test contracts as check units, with an implementation swapped in."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import yaml

from pv.checks.compiling import CheckUnit, CompiledCheck, compile_unit
from pv.contracts.checkspec import equation_implementations

DATA_DIR = Path(__file__).resolve().parent
ALLOW = ("compiler_data",)
TARGETS = "compiler_data.pvc_targets"


def units(filename: str) -> dict[str, CheckUnit]:
    """Every obligation of a test contract, by id (all equations' implementations attached)."""
    path = DATA_DIR / filename
    data = yaml.safe_load(path.read_text())
    implementations = equation_implementations(data)
    return {
        obligation["id"]: CheckUnit(
            contract=path.stem, obligation=obligation["id"], path=str(path), line=1,
            check=obligation.get("check"), implementations=implementations,
            property=obligation.get("property", ""),
        )
        for obligation in data["proof_obligations"]
    }


def compiled(filename: str, obligation: str, **functions: str) -> CompiledCheck:
    """One obligation compiled, with equation -> function name of pvc_targets swapped in."""
    unit = units(filename)[obligation]
    if functions:
        swapped = {**unit.implementations, **{eq: f"{TARGETS}:{fn}" for eq, fn in functions.items()}}
        unit = dataclasses.replace(unit, implementations=swapped)
    return compile_unit(unit)


def inline(check: dict, **functions: str) -> CompiledCheck:
    """A check written in the test, with equation -> function name of pvc_targets bound."""
    implementations = {eq: f"{TARGETS}:{fn}" for eq, fn in functions.items()}
    return compile_unit(CheckUnit("inline", "INLINE-001", "<test>", 1, check, implementations))
