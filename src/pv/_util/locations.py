"""Where the repository's own folders are, seen from the installed (editable) package."""

from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository that holds ``src/pv``: its ``contracts/``, ``profiles/``, ``schema/``."""
    return Path(__file__).resolve().parents[3]
