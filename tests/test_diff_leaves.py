"""`pv diff` names the changed leaf of a check with its old and new value, and judges what the
change does to the promise: a loosened tolerance, a widened bound or a removed conjunct of `expect`
is breaking (major); their opposites are minor."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from pv.cli import main
from pv.contracts.diff import diff_contracts, suggested_level
from pv.contracts.view import contract_view

OLD = {
    "metadata": {"version": "1.0.0", "description": "d", "depends_on": []},
    "name": "leaf",
    "equations": {"f": {"formula": "f(x) = x", "implementation": "pkg.mod:f"}},
    "proof_obligations": [{
        "id": "L-001", "type": "invariant", "property": "f is near the identity", "formal": "f(x) ~ x",
        "check": {
            "given": {"x": {"float": {"min": -1.0, "max": 1.0}}, "n": {"int": {"min": 0, "max": 10}}},
            "call": "f",
            "assume": "n > 0",
            "result": "f(x)",
            "expect": "isclose(result, x) and abs(result) <= 1.0 and result * x >= 0",
            "tolerance": {"abs": 1e-6, "rel": 1e-6},
            "budget": {"examples": 100},
        },
    }],
}
LONG_EXPECT = "isclose(result, x) and " + " and ".join(f"abs(result - {i}.0) >= 0.0" for i in range(12))


def changed(path: tuple, value) -> dict:
    """OLD with the value at ``path`` below the obligation's check replaced (None: removed)."""
    data = yaml.safe_load(yaml.safe_dump(OLD))
    target = data["proof_obligations"][0]["check"]
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return data


def lines(new: dict, old: dict = OLD) -> list[tuple[str, str]]:
    changes = diff_contracts(contract_view(old), contract_view(new))
    return [(c.level, f"{c.where}: {c.what}") for c in changes]


WHERE = "proof_obligations[L-001].check"
CASES = [
    ("tolerance loosened", ("tolerance", "abs"), 1e-3, "major", f"{WHERE}.tolerance.abs: loosened 1e-06 -> 0.001"),
    ("tolerance tightened", ("tolerance", "rel"), 1e-9, "minor", f"{WHERE}.tolerance.rel: tightened 1e-06 -> 1e-09"),
    ("tolerance given up", ("tolerance", "rel"), None, "minor", f"{WHERE}.tolerance.rel: tightened 1e-06 -> 0"),
    ("expect conjunct removed", ("expect",), "isclose(result, x) and abs(result) <= 1.0", "major",
     f"{WHERE}.expect: removed conjunct `result * x >= 0`"),
    ("expect bound widened", ("expect",), "isclose(result, x) and abs(result) <= 2.0 and result * x >= 0", "major",
     f"{WHERE}.expect: bound widened `abs(result) <= 1.0` -> `abs(result) <= 2.0`"),
    ("expect bound narrowed", ("expect",), "isclose(result, x) and abs(result) <= 0.5 and result * x >= 0", "minor",
     f"{WHERE}.expect: bound narrowed `abs(result) <= 1.0` -> `abs(result) <= 0.5`"),
    ("expect conjunct added", ("expect",), OLD["proof_obligations"][0]["check"]["expect"] + " and result <= 1.0",
     "minor", f"{WHERE}.expect: added conjunct `result <= 1.0`"),
    ("expect rewritten", ("expect",), "isclose(result, x) and abs(result) <= 1.0 and result * x > -1", "major",
     f"{WHERE}.expect: changed `result * x >= 0` -> `result * x > -1`"),
    ("assume added", ("assume",), "n > 0 and n < 5", "major", f"{WHERE}.assume: added conjunct `n < 5`"),
    ("assume dropped", ("assume",), None, "minor", f"{WHERE}.assume: removed conjunct `n > 0`"),
    ("inputs narrowed", ("given", "n", "int", "max"), 5, "major", f"{WHERE}.given.n.int.max: inputs narrowed 10 -> 5"),
    ("inputs widened", ("given", "x", "float", "min"), -2.0, "minor",
     f"{WHERE}.given.x.float.min: inputs widened -1.0 -> -2.0"),
    ("result changed", ("result",), "f(-x)", "major", f"{WHERE}.result: changed `f(x)` -> `f(-x)`"),
    ("budget lowered", ("budget", "examples"), 10, "minor", f"{WHERE}.budget.examples: changed `100` -> `10`"),
]


@pytest.mark.parametrize(("path", "value", "level", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_check_change_is_named_at_its_leaf_and_judged(path: tuple, value, level: str, line: str) -> None:
    found = lines(changed(path, value))
    assert found == [(level, line)]


def test_a_long_expression_shows_both_sides_apart() -> None:
    old = changed(("expect",), LONG_EXPECT)
    new = changed(("expect",), LONG_EXPECT.replace("abs(result - 11.0) >= 0.0", "abs(result - 11.0) >= 0.5"))
    ((level, line),) = lines(new, old)
    assert level == "minor" and line.endswith("`abs(result - 11.0) >= 0.0` -> `abs(result - 11.0) >= 0.5`")


def test_pv_diff_prints_old_and_new_value_and_a_major_bump(tmp_path: Path, capsys) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(yaml.safe_dump(OLD))
    new.write_text(yaml.safe_dump(changed(("tolerance", "abs"), 1e-2)))
    assert main(["diff", str(old), str(new)]) == 1  # the new version still says 1.0.0
    out = capsys.readouterr().out.splitlines()
    assert out == [f"MAJOR  {WHERE}.tolerance.abs: loosened 1e-06 -> 0.01",
                   "suggested bump: major (1.0.0 -> 2.0.0); declared 1.0.0 -> 1.0.0 (none): too small"]


def test_the_view_is_typed_and_frozen() -> None:
    view = contract_view(OLD, "leaf-v1", "leaf-v1.yaml")
    (obligation,) = view.obligations
    assert (view.name, view.version, obligation.key, obligation.id) == ("leaf", "1.0.0", "L-001", "L-001")
    assert obligation.check["tolerance"]["abs"] == 1e-6 and view.equations[0].implementation == "pkg.mod:f"
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        obligation.check["expect"] = "True"  # type: ignore[index]
    assert suggested_level(diff_contracts(view, contract_view(OLD))) == "none"


def test_a_falsifier_deciding_an_obligation_is_minor_to_add_and_major_to_drop_or_move() -> None:
    falsifier = {"id": "FT-L-001", "rule": "r", "prediction": "p", "if_fails": "f"}
    plain = {**OLD, "falsification_tests": [falsifier]}
    deciding = {**OLD, "falsification_tests": [{**falsifier, "obligation": "L-001"}]}
    moved = {**OLD, "falsification_tests": [{**falsifier, "obligation": "L-002"}]}
    where = "falsification_tests[FT-L-001].obligation"
    assert lines(deciding, plain) == [("minor", f"{where}: added `L-001`")]
    assert lines(plain, deciding) == [("major", f"{where}: removed (was `L-001`)")]
    assert lines(moved, deciding) == [("major", f"{where}: changed `L-001` -> `L-002`")]
