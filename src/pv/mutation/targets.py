"""What is mutated: the modules and scopes that contracts bind and falsifiers declare they cover."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path

import yaml

from pv._util.errors import UserError
from pv.mutation.generation import Site, defined_names, sites


@dataclass
class Target:
    """One module to mutate, its source as read once at the start, and the scopes of it that are mutated
    (``""``: all of it). Every mutant is made from that text, whatever happens to the file later."""

    module: str
    path: Path
    source: str
    scopes: set[str] = field(default_factory=set)


def contract_bindings(contracts: Path) -> set[str]:
    """``module:qualname`` of every implementation and check constant bound by the contracts in a folder."""
    found: set[str] = set()
    for path in sorted(contracts.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise UserError(f"{path}: cannot read the contract: {err}") from None
        for equation in (data.get("equations") or {}).values():
            if isinstance(equation, dict) and isinstance(equation.get("implementation"), str):
                found.add(equation["implementation"])
        for obligation in data.get("proof_obligations") or []:
            check = obligation.get("check") if isinstance(obligation, dict) else None
            constants = check.get("constants") if isinstance(check, dict) else None
            if isinstance(constants, dict):
                found.update(value for value in constants.values() if isinstance(value, str) and ":" in value)
    return found


def _source_spec(module: str) -> ModuleSpec | None:
    """The import spec of ``module`` when it has a Python source file (found without importing it)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    return spec if spec is not None and spec.origin and spec.origin.endswith(".py") else None


def module_path(module: str, root: Path) -> Path:
    """The source file of ``module`` (found without importing it)."""
    spec = _source_spec(module)
    if spec is None or spec.origin is None:
        raise UserError(f"cannot mutate {module!r}: no Python source file found for it")
    return Path(spec.origin).resolve()


def resolve_targets(scopes: Iterable[str], root: Path, only: Sequence[str] = ()) -> list[Target]:
    """Targets of ``module`` / ``module:qualname`` scopes, restricted to modules under ``only`` prefixes."""
    targets: dict[str, Target] = {}
    for scope in sorted(set(scopes)):
        module, _, qualname = scope.partition(":")
        if only and not any(module == prefix or module.startswith(prefix + ".") for prefix in only):
            continue
        if module not in targets:
            path = module_path(module, root)
            targets[module] = Target(module, path, path.read_text(encoding="utf-8"))
        target = targets[module]
        if qualname:
            names = defined_names(target.source, str(target.path))
            if qualname not in names:
                raise UserError(f"cannot mutate {scope!r}: {target.path} defines no {qualname!r}")
        target.scopes.add(qualname)
    return [targets[name] for name in sorted(targets)]


def whole_modules(name: str) -> set[str]:
    """``name`` itself when it is a module; every module under it (its ``.py`` files, found without
    importing them) when it is a package: scopes mutated whole, whatever contracts and falsifiers name."""
    spec = _source_spec(name)
    if spec is None or spec.origin is None:
        raise UserError(f"--include {name}: no Python module or package of that name is found")
    if not spec.submodule_search_locations:
        return {name}
    package = Path(spec.origin).parent
    found = set()
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package).with_suffix("").parts
        if all(part.isidentifier() for part in parts) and all((package.joinpath(*parts[:i]) / "__init__.py").is_file()
                                                               for i in range(1, len(parts))):
            found.add(".".join([name, *(parts[:-1] if parts[-1] == "__init__" else parts)]))
    return found


def scopes_from_contracts(contracts: Path) -> set[str]:
    """The bound functions of the contracts folder (empty when there is none)."""
    return contract_bindings(contracts) if contracts.is_dir() else set()


def find_site(key: str, root: Path) -> tuple[Target, Site]:
    """The module and site of a mutant key ``module:scope:operator:n``, read from the current source."""
    parts = key.rsplit(":", 3)
    if len(parts) != 4 or not parts[3].isdigit():
        raise UserError(f"{key!r}: expected a mutant key module:scope:operator:n (as pv mutate reports it)")
    module = parts[0]
    path = module_path(module, root)
    target = Target(module, path, path.read_text(encoding="utf-8"), {""})
    wanted = ":".join(parts[1:])
    for site in sites(target.source, [""], str(path)):
        if site.key == wanted:
            return target, site
    raise UserError(f"{key}: {path} has no such mutant (the code changed, or the key is mistyped)")
