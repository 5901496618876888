"""Rules over contracts beyond the schema; each module registers its rules on import.

``RULE_MODULES`` are imported for every validation. ``ON_DEMAND_MODULES`` are
slow to import (the expression compiler) and check only some fields: they are
imported when a document has such a field (or when every rule is asked for),
which finds exactly the same problems and keeps `pv validate` quick to start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

#: Modules whose import registers rules with :mod:`pv.contracts.rules.registry`.
RULE_MODULES = (
    "pv.contracts.rules.yaml_rules",
    "pv.contracts.rules.schema",
    "pv.contracts.rules.ids",
    "pv.contracts.rules.references",
    "pv.contracts.rules.values",
)


def has_executable_fields(data: Any) -> bool:
    """Whether a contract has an obligation ``check`` or an equation ``implementation``."""
    if not isinstance(data, dict):
        return False
    obligations = data.get("proof_obligations")
    equations = data.get("equations")
    return (isinstance(obligations, list) and any(isinstance(o, dict) and "check" in o for o in obligations)) or (
        isinstance(equations, dict) and any(isinstance(e, dict) and "implementation" in e for e in equations.values()))


#: Module -> the documents that need it.
ON_DEMAND_MODULES: dict[str, Callable[[Any], bool]] = {
    "pv.contracts.rules.expressions": has_executable_fields,
}


def load_rule_modules(documents: Iterable[Any] | None = None) -> None:
    """Import the rule modules (idempotent); the on-demand ones only if a document needs them.

    ``documents`` None means: every module.
    """
    for name in RULE_MODULES:
        importlib.import_module(name)
    docs = None if documents is None else list(documents)
    for name, needed in ON_DEMAND_MODULES.items():
        if docs is None or any(needed(doc.data) for doc in docs):
            importlib.import_module(name)
