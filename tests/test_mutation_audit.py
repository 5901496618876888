"""pv mutate --audit-equivalents: a listed equivalent is tried against the original on generated inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from mutation_projects import plant
from pv import cli
from pv.mutation.audit import DIFFERS, NOT_CHECKED, SAME, audit_equivalents
from pv.mutation.equivalents import load_equivalents

AUDITED = '''\
import torch


def at_least(x: int, lo: int) -> int:
    if x < lo:
        return lo
    return x


def biggest(a: int, b: int) -> int:
    return max(a, b)


def half(n: int) -> float:
    return n / 2


def rows(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1, x.shape[-1])
    return flat if flat.stride(-1) == 1 else flat.contiguous()


def untyped(x):
    return x + 1
'''

#: two true equivalents, two claims that generated inputs disprove, one that cannot be checked, one stale
EQUIVALENTS = """\
audited:at_least:compare:0:
  change: x < lo -> x <= lo
  reason: at x == lo both return lo
audited:biggest:swap_args:0:
  change: max(a, b) -> max(b, a)
  reason: max of two ints does not depend on their order
audited:half:constant:0:
  change: 2 -> 3
  reason: trust me
audited:rows:constant:2:
  change: 1 -> 2
  reason: a contiguous copy of the same values, never a wrong layout
audited:untyped:constant:0:
  change: 1 -> 2
  reason: no one can tell
audited:gone:constant:0:
  change: 1 -> 2
  reason: a function that no longer exists
"""


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = plant(tmp_path, {"audited.py": AUDITED, "equivalent.yaml": EQUIVALENTS}, monkeypatch)
    monkeypatch.delitem(__import__("sys").modules, "audited", raising=False)
    return root


def test_the_audit_finds_the_claims_that_generated_inputs_disprove(project: Path) -> None:
    findings = {f.key: f for f in audit_equivalents(load_equivalents(project / "equivalent.yaml"), project, 30)}
    assert {key: f.outcome for key, f in findings.items()} == {
        "audited:at_least:compare:0": SAME, "audited:biggest:swap_args:0": SAME,
        "audited:half:constant:0": DIFFERS, "audited:rows:constant:2": DIFFERS,
        "audited:untyped:constant:0": NOT_CHECKED, "audited:gone:constant:0": NOT_CHECKED}
    # column-major input: the original copies it to unit stride, the mutant hands the view on
    assert "strides (1, " in findings["audited:rows:constant:2"].detail
    assert findings["audited:at_least:compare:0"].examples >= 10
    assert "no type hint" in findings["audited:untyped:constant:0"].detail
    assert findings["audited:gone:constant:0"].detail.startswith("stale:")


def test_the_command_lists_what_differs_and_exits_1(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["mutate", "--audit-equivalents", "--equivalents", "equivalent.yaml", "--examples", "30"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "differs:" and "audited:half:constant:0" in out
    assert out.rstrip().endswith("6 equivalents audited: 2 differ, 2 the same on every generated call, 2 not checked")


def test_an_equivalents_file_outside_the_project_is_refused(project: Path, tmp_path_factory: pytest.TempPathFactory,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path_factory.mktemp("elsewhere") / "equivalent.yaml"
    outside.write_text(EQUIVALENTS)
    assert cli.main(["mutate", "--audit-equivalents", "--equivalents", str(outside)]) == 2
    assert "equivalent.yaml lies outside the project" in capsys.readouterr().err
