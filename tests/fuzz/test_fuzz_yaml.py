"""Tracebacks and unbounded work in the loader and rules: generated contracts (hostile scalars
at every kind of place) and one input per root cause, through `pv validate`, `pv check`,
`pv compile` and `pv status`: a finding or a clear error, in bounded time and memory."""

from __future__ import annotations

import os
import py_compile
from pathlib import Path

from fuzz_bounded import assert_clear_cli, drawn, record, run_batch
from fuzz_contracts import HEADER
from hypothesis import strategies as st

BASE_CHECK = ('{"given": {"x": {"int": {"min": @MIN@, "max": @MAX@}}, "y": {"float": {"min": @FMIN@, "max": 1.0}}},'
              ' "call": "f", "result": "f(x)", "expect": @EXPECT@, "tolerance": {"abs": @TOL@},'
              ' "budget": {"seconds": @SECONDS@, "examples": @EXAMPLES@}}')
DEFAULTS = {"@MIN@": "0", "@MAX@": "3", "@FMIN@": "0.0", "@EXPECT@": '"isclose(result, x)"', "@TOL@": "0.001",
            "@SECONDS@": "5", "@EXAMPLES@": "10", "@ID@": '"FZ-INV-001"', "@KEY@": "note"}
#: Hostile scalars of YAML (raw text), from the root causes and around them.
SCALARS = [
    "0x" + "f" * 20_000, "0x" + "f" * 1_000, "0o" + "7" * 9_000, "0o" + "7" * 400, "9" * 5_000, "-" + "9" * 3_000,
    "!!float " + "9" * 3_000, "!!float 0x" + "f" * 600, "!!int 0x" + "f" * 5_000, ".nan", ".inf", "-.inf", "1e999",
    "!!float .nan", "!!str 1", "!!binary aGk=", "!!python/object:os.system x", "!custom 1", "~", "true", "''", '""',
    '"\\u0000"', '"a\\nb"', '"' + "x" * 60_000 + '"', "[" * 150 + "]" * 150, "{a: {b: {c: {d: 1}}}}", "&anchor 1",
    "2026-05-22", "0BAD", "-1", "1.5", "[1, 2, 3]", "{int: {min: 0, max: 10}}", "1e308", "-0.0", "0x1F", "0o17",
]
PLACES = sorted(DEFAULTS)


def hostile_contract(place: str, scalar: str) -> str:
    check = BASE_CHECK
    values = {**DEFAULTS, place: scalar}
    for key, value in values.items():
        check = check.replace(key, value)
    text = HEADER.format(name="fuzz", binding="fuzz_targets:identity", obligation=values["@ID@"])
    return text + "  check: " + check + "\n" + f"{values['@KEY@']}: 1\n"


def _root_causes() -> dict[str, str]:
    """One contract (or file) per root cause of the loader and rules."""
    unknown = "".join(f"k{i}_extra: 1\n" for i in range(20_000))
    aliased = 'big: &a "' + "x" * 1000 + '"\nuses: [' + ", ".join(["*a"] * 40_000) + "]\n"
    nested = ('{"given": {"x": {"list": {"of": {"list": {"of": {"list": {"of": {"int": {"min": 0, "max": 1000}},'
              ' "max_len": 1000}}, "max_len": 1000}}, "max_len": 1000}}}, "call": "f", "result": "f(x)",'
              ' "expect": "result == x"}')
    base = HEADER.format(name="fuzz", binding="fuzz_targets:identity", obligation='"FZ-INV-001"')
    return {
        "float-tag-huge-int": hostile_contract("@TOL@", "!!float " + "9" * 3000),
        "hex-bound": hostile_contract("@MAX@", "0x" + "f" * 1000),
        "octal-bound": hostile_contract("@MAX@", "0o" + "7" * 1000),
        "nan-float-bound": hostile_contract("@FMIN@", ".nan"),
        "unknown-keys": hostile_contract("@KEY@", "note") + unknown,
        "scalar-aliases": hostile_contract("@KEY@", "note") + aliased,
        "nested-list-domain": base + "  check: " + nested + "\n",
        "inf-tolerance": hostile_contract("@TOL@", ".inf"),
        "inf-budget": hostile_contract("@SECONDS@", ".inf"),
        "huge-examples": hostile_contract("@EXAMPLES@", "9" * 40),
        "id-0BAD": hostile_contract("@ID@", '"0BAD"'),
        "id-empty": hostile_contract("@ID@", '""'),
        "inf-choice": base + '  check: {"given": {"x": {"choice": {"values": [.inf, -.inf, 1.0]}}}, "call": "f",'
                             ' "result": "f(x)", "expect": "result == x or isnan(x)"}\n',
    }


def test_generated_and_root_cause_contracts_end_clearly(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "gen").mkdir(parents=True)
    pairs = drawn(st.tuples(st.sampled_from(PLACES), st.sampled_from(SCALARS)), 60)
    files = []
    for index, (place, scalar) in enumerate(pairs):
        path = work / "gen" / f"g{index}.yaml"
        path.write_text(hostile_contract(place, scalar), encoding="utf-8")
        files.append(str(path.relative_to(work)))
    roots = work / "roots"
    roots.mkdir()
    for name, text in _root_causes().items():
        (roots / f"{name}.yaml").write_text(text, encoding="utf-8")
    os.mkfifo(roots / "fifo.yaml")
    (roots / "bad\nname: error PV-FORGED-001 forged.yaml").write_text("not: [a mapping\n")
    cases = [{"kind": "cli", "argv": ["validate", path]} for path in files]
    cases += [{"kind": "cli", "argv": ["validate", str(p.relative_to(work))]} for p in sorted(roots.iterdir())]
    cases += [
        {"kind": "cli", "argv": ["validate", "roots"], "rc": (1, 2)},
        {"kind": "cli", "argv": ["check", "roots/hex-bound.yaml", "roots/octal-bound.yaml", "roots/inf-choice.yaml",
                                 "roots/id-0BAD.yaml", "--allow-module", "fuzz_targets"]},
        {"kind": "cli", "argv": ["status", "roots/hex-bound.yaml", "roots/id-0BAD.yaml"]},
        {"kind": "cli", "argv": ["compile", "roots/id-0BAD.yaml", "roots/inf-choice.yaml", "-o", "compiled"],
         "rc": (0, 1)},
        {"kind": "cli", "argv": ["compile", "roots/id-empty.yaml", "-o", "compiled-empty"], "rc": (0, 1)},
        {"kind": "cli", "argv": ["compile", "gen", "-o", "compiled-gen"], "rc": (0, 1)},
    ]
    batch = run_batch(cases, tmp_path)
    assert_clear_cli(cases, batch)
    by_name = {case["argv"][1]: result for case, result in zip(cases, batch.results) if case["argv"][0] == "validate"}
    for name in ("float-tag-huge-int", "nan-float-bound", "inf-tolerance", "inf-budget", "huge-examples", "id-0BAD",
                 "id-empty", "unknown-keys", "scalar-aliases", "hex-bound", "octal-bound"):
        assert by_name[f"roots/{name}.yaml"]["rc"] == 1, (name, by_name[f"roots/{name}.yaml"])
    assert by_name["roots/fifo.yaml"]["rc"] == 2
    forged = next(r for k, r in by_name.items() if "forged" in k)
    assert not any(line.startswith("name: error PV-FORGED") for line in forged["stdout"].splitlines())
    for folder in ("compiled", "compiled-gen", "compiled-empty"):
        for module in (work / folder).glob("*.py") if (work / folder).is_dir() else []:
            py_compile.compile(str(module), doraise=True)
    record("loader and rules (YAML)", batch, len(cases))
