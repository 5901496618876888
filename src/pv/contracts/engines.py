"""The engines that decide an obligation, in one registry.

The check spec (which names a ``check:`` block may give, which engines run by
default), ``pv check --engine``, the runner in :mod:`pv.checks.engines` and the
schema's engine list (kept equal by a test) all derive from :data:`ENGINES`.

Default choice by domain: finite inputs small enough to enumerate are decided by
exhaustive enumeration (a proof); otherwise Hypothesis searches them, and
CrossHair joins it where every input is one it reasons about exactly (integers,
booleans, choices, and lists or optionals of those). Floats are left to
Hypothesis: CrossHair models them as real numbers and rarely finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from pv.contracts.domains import Domain, product_size

#: Most input combinations the exhaustive engine enumerates unless the budget says otherwise.
EXHAUSTIVE_CAP = 100_000

Given = Mapping[str, Domain]


@dataclass(frozen=True)
class Engine:
    """One engine: its name in contracts, the module with its ``run``, and when it cannot run."""

    name: str
    module: str
    unfit: Callable[[Given, int], str | None]
    #: whether it runs by default on inputs it fits (exhaustive always; CrossHair on exact symbolic inputs)
    default: Callable[[Given, int], bool]


def _exhaustive_unfit(given: Given, cap: int) -> str | None:
    size = product_size(given)
    if size is None:
        return "exhaustive needs every input domain finite (bounded ints, bools, choices, bounded lists)"
    if size > cap:
        return f"exhaustive would enumerate {size} combinations, more than the cap of {cap}"
    return None


def _crosshair_unfit(given: Given, cap: int) -> str | None:
    if not all(domain.plain for domain in given.values()):
        return "crosshair takes plain Python inputs only, not tensors"
    return None


def _fits_all(given: Given, cap: int) -> None:
    return None


def _always(given: Given, cap: int) -> bool:
    return True


def _too_many_to_enumerate(given: Given, cap: int) -> bool:
    return _exhaustive_unfit(given, cap) is not None


def _too_many_and_exact(given: Given, cap: int) -> bool:
    return _too_many_to_enumerate(given, cap) and all(domain.symbolic for domain in given.values())


ENGINES: dict[str, Engine] = {engine.name: engine for engine in (
    Engine("exhaustive", "pv.checks.engines.exhaustive", _exhaustive_unfit, default=_always),
    Engine("hypothesis", "pv.checks.engines.hypothesis_engine", _fits_all, default=_too_many_to_enumerate),
    Engine("crosshair", "pv.checks.engines.crosshair_engine", _crosshair_unfit, default=_too_many_and_exact),
)}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def engine_unfit(name: str, given: Given, cap: int = EXHAUSTIVE_CAP) -> str | None:
    """Why engine ``name`` cannot check these inputs, or ``None`` if it can."""
    if name not in ENGINES:
        return f"unknown engine {name!r} (one of: {', '.join(ENGINE_NAMES)})"
    return ENGINES[name].unfit(given, cap)


def select_engines(given: Given, cap: int = EXHAUSTIVE_CAP) -> tuple[str, ...]:
    """The engines that run on these inputs when the check names none (see the module doc)."""
    return tuple(name for name, engine in ENGINES.items()
                 if engine.unfit(given, cap) is None and engine.default(given, cap))
