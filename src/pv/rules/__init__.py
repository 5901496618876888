"""Rules over contracts beyond the schema; each module registers its rules on import."""

from __future__ import annotations

import importlib

#: Modules whose import registers rules with :mod:`pv.rules.registry`.
RULE_MODULES = (
    "pv.rules.yaml_rules",
    "pv.rules.schema",
    "pv.rules.ids",
    "pv.rules.references",
    "pv.rules.values",
    "pv.rules.expressions",
)


def load_rule_modules() -> None:
    """Import every rule module (idempotent)."""
    for name in RULE_MODULES:
        importlib.import_module(name)
