"""pv's package data: the JSON schemas and the built-in hardware profiles.

Read through :mod:`importlib.resources`, so they are found the same way in a
wheel, an editable install or a zip, never relative to a source file.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

SCHEMAS = "schemas"
PROFILES = "profiles"


def schema_text(name: str) -> str:
    """The text of the schema file ``name`` (``contract.schema.json``, ...)."""
    return resources.files("pv").joinpath(SCHEMAS, name).read_text(encoding="utf-8")


def builtin_profiles() -> dict[str, Any]:
    """``name -> file`` (a Traversable) of every built-in hardware profile (``<name>.yaml``)."""
    folder = resources.files("pv").joinpath(PROFILES)
    return {entry.name[: -len(".yaml")]: entry for entry in folder.iterdir() if entry.name.endswith(".yaml")}
