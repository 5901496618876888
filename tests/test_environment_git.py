"""The git state a gate report records: a clean checkout stays clean while the run writes its own
reports (the staging folder of `pv verify` is untracked), and any other change makes it dirty."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pv.evidence.environment import git_state


def _repo(root: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "tracked.txt").write_text("v1\n")
    subprocess.run(["git", "-C", str(root), "add", "tracked.txt"], check=True)
    subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "one"],
                   check=True)
    return root


def test_the_runs_own_output_folder_does_not_make_the_tree_dirty(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    staging = root / "reports" / ".local.staging"
    staging.mkdir(parents=True)
    (staging / "gate-report.json").write_text("{}")
    assert git_state(root, [staging]) == {"commit": git_state(root)["commit"], "dirty": False}
    assert git_state(root)["dirty"] is True  # without naming it, the untracked folder is a change


def test_other_changes_still_make_it_dirty(tmp_path: Path) -> None:
    root = _repo(tmp_path / "repo")
    staging = root / "reports" / "out"
    staging.mkdir(parents=True)
    (root / "notes.txt").write_text("untracked elsewhere")
    assert git_state(root, [staging])["dirty"] is True
    (root / "notes.txt").unlink()
    (root / "tracked.txt").write_text("v2\n")  # an edit inside the tree, even with the output named
    assert git_state(root, [root])["dirty"] is True
