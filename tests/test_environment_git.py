"""The git state evidence records: a tracked change or an untracked input makes the tree dirty; an
untracked file that is no input of the run (another run's reports, notes) does not."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pv.attest.cleanroom import git_source
from pv.attest.inputs import InputRule

RULE = InputRule(folders=("src",), files=())


def _repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "src").mkdir(parents=True)
    (root / "src" / "tracked.py").write_text("v = 1\n")
    subprocess.run(["git", "-C", str(root), "add", "src"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "one"],
                   check=True)
    return root


def test_untracked_files_that_are_no_input_leave_the_tree_clean(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    staging = root / "reports" / ".local.staging"
    staging.mkdir(parents=True)
    (staging / "gate-report.intoto.jsonl").write_text("{}")
    (root / "notes.txt").write_text("notes")
    source = git_source(root, RULE)
    assert source.dirty is False and source.cleanroom is False
    assert source.commit is not None and len(source.commit) == 40


def test_tracked_changes_and_untracked_inputs_make_it_dirty(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    (root / "conftest.py").write_text("# an untracked conftest, which pytest would load\n")
    assert git_source(root, RULE).dirty is True
    (root / "conftest.py").unlink()
    (root / "src" / "new.py").write_text("untracked inside an input folder\n")
    assert git_source(root, RULE).dirty is True
    (root / "src" / "new.py").unlink()
    assert git_source(root, RULE).dirty is False
    (root / "src" / "tracked.py").write_text("v = 2\n")  # an edit of a tracked file, input or not
    assert git_source(root, RULE).dirty is True


def test_outside_git_nothing_is_known(tmp_path: Path) -> None:
    assert git_source(tmp_path, RULE).to_json() == {"commit": None, "tree": None, "dirty": None, "cleanroom": False}
