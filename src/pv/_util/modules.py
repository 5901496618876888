"""Which loaded modules are the project's own code."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def project_source(module: Any, root: Path) -> Path | None:
    """The source file of ``module`` when it is pure Python from the project folder ``root`` (resolved), not an
    installed library; else None."""
    origin = getattr(module, "__file__", None)
    if not origin or not origin.endswith(".py"):
        return None
    path = Path(origin).resolve()
    return path if root in path.parents and "site-packages" not in path.parts else None
