"""Contract texts for the fuzz suite: a valid contract with one check block to vary."""

from __future__ import annotations

import json
from typing import Any

HEADER = """metadata:
  version: 1.0.0
  created: '2026-11-21'
  author: fuzz
  description: a contract made by the fuzz suite
  references:
  - none

name: {name}
version: 1.0.0
scope: fuzz
kind: contract

equations:
  f:
    formula: f(x) = x
    domain: x in Z
    codomain: Z
    implementation: {binding}

proof_obligations:
- id: {obligation}
  type: invariant
  property: the property of the fuzz suite
  formal: f(x) == x
"""


def contract(name: str = "fuzz", binding: str = "fuzz_targets:identity", obligation: str = "FZ-INV-001",
             check: dict[str, Any] | None = None, extra: str = "") -> str:
    """A contract text; ``check`` (a mapping, written as JSON, which is YAML) is its check block."""
    text = HEADER.format(name=name, binding=binding, obligation=json.dumps(obligation))
    block = check if check is not None else {"given": {"x": {"int": {"min": 0, "max": 3}}}, "call": "f",
                                              "result": "f(x)", "expect": "result == x"}
    return text + "  check: " + json.dumps(block) + "\n" + extra
