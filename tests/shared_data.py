"""Where the real test data lives (vocabularies, upstream contracts), for tests and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The folder of real test data: ``$PV_SHARED_DIR`` or ``../shared`` beside the repository."""
    return Path(os.environ.get("PV_SHARED_DIR", REPO_ROOT.parent / "shared"))
