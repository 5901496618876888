"""A project's pv configuration: the ``[tool.pv]`` table of its ``pyproject.toml``.

The project is found from the working directory upwards: the first folder with a
``pyproject.toml`` is the project, and it is configured for pv only if that file
has a ``[tool.pv]`` table. ``pv --root DIR`` (or ``$PV_ROOT``) names the project
folder instead; there the table may be absent and every key takes its default.

Keys (paths are relative to the project folder)::

    [tool.pv]
    contracts = "contracts"          # the folder of contract files
    modules = ["mypkg"]              # import prefixes a contract's check may bind to
    errors = "mypkg.errors"          # where a bare `raises.error` name is looked up
    falsifiers = ["falsifiers"]      # falsifier files or folders
    profiles = ["profiles"]          # profile folders beside pv's built-in ones
    reports = "reports/local"        # where `pv verify` writes its reports
    trusted_keys = ["keys/ci.pub"]   # public key files whose signatures a gate accepts
    mutation_report = "reports/mutate/all.json"  # a `pv mutate --format json` report for the gate report
    mutation_tests = ["falsifiers", "contracts", "tests"]  # the tests `pv mutate` may kill mutants with

Environment variables override the file: ``$PV_CONTRACTS``, ``$PV_REPORTS`` (a
path), ``$PV_MUTATION_REPORT`` (a path), ``$PV_MODULES``, ``$PV_FALSIFIERS``, ``$PV_PROFILES``, ``$PV_TRUSTED_KEYS``
(lists: comma-separated modules, ``os.pathsep``-separated paths). Command-line
flags override both. The project folder goes first on ``sys.path`` once the
configuration is activated, so the console script imports the project's code.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pv._util.errors import UserError
from pv._util.files import InputError, read_input

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

PYPROJECT = "pyproject.toml"
#: Largest pyproject.toml read, in bytes.
MAX_PYPROJECT_BYTES = 4 * 1024 * 1024
ROOT_ENV = "PV_ROOT"
#: key -> (environment variable, kind); kind "path", "paths", "modules", "module" or "optional-path"
KEYS: dict[str, tuple[str, str]] = {
    "contracts": ("PV_CONTRACTS", "path"),
    "modules": ("PV_MODULES", "modules"),
    "errors": ("PV_ERRORS", "module"),
    "falsifiers": ("PV_FALSIFIERS", "paths"),
    "profiles": ("PV_PROFILES", "paths"),
    "reports": ("PV_REPORTS", "path"),
    "trusted_keys": ("PV_TRUSTED_KEYS", "paths"),
    "mutation_report": ("PV_MUTATION_REPORT", "optional-path"),
    "mutation_tests": ("PV_MUTATION_TESTS", "paths"),
}
DEFAULTS: dict[str, Any] = {
    "contracts": "contracts",
    "modules": [],
    "errors": None,
    "falsifiers": ["falsifiers"],
    "profiles": [],
    "reports": "reports/local",
    "trusted_keys": [],
    "mutation_report": None,
    "mutation_tests": [],
}


class ConfigError(UserError):
    """A ``[tool.pv]`` table, ``--root`` or environment variable that cannot be used."""


@dataclass(frozen=True)
class Config:
    """The configuration of one project; ``root`` is None outside any configured project."""

    root: Path | None
    source: Path | None
    contracts: Path | None
    modules: tuple[str, ...] = ()
    errors: str | None = None
    falsifiers: tuple[Path, ...] = ()
    profiles: tuple[Path, ...] = ()
    reports: Path | None = None
    trusted_keys: tuple[Path, ...] = ()
    #: the mutation report a gate report embeds (None: none configured)
    mutation_report: Path | None = None
    #: the test files and folders ``pv mutate`` runs against each mutant (empty: falsifiers and contracts)
    mutation_tests: tuple[Path, ...] = ()
    overridden: frozenset[str] = field(default_factory=frozenset)

    @property
    def configured(self) -> bool:
        """Whether a project was found (or named by ``--root`` / ``$PV_ROOT``)."""
        return self.root is not None

    def require(self, what: str) -> Config:
        """This configuration, or ConfigError saying that ``what`` needs a configured project."""
        if not self.configured:
            raise ConfigError(
                f"{what}: no pv project here: no pyproject.toml with a [tool.pv] table in "
                f"{Path.cwd()} or a folder above it; add one (see docs/configuration.md), "
                f"name the project with --root DIR or ${ROOT_ENV}, or pass the paths explicitly"
            )
        return self


def find_project(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``pyproject.toml`` (None: none); one that
    is not a regular file is found too, and refused by name when read."""
    for folder in [start, *start.parents]:
        if (folder / PYPROJECT).exists():
            return folder
    return None


def _read_table(pyproject: Path) -> dict[str, Any] | None:
    try:
        data = tomllib.loads(read_input(pyproject, MAX_PYPROJECT_BYTES).decode("utf-8"))
    except InputError as err:
        raise ConfigError(str(err)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{pyproject}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{pyproject}: invalid TOML: {err}") from None
    tool = data.get("tool")
    table = tool.get("pv") if isinstance(tool, dict) else None
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ConfigError(f"{pyproject}: [tool.pv] must be a table")
    return table


def pytest_pythonpath(root: Path) -> list[Path]:
    """The folders of ``[tool.pytest.ini_options] pythonpath`` of the project at ``root`` (absolute): where its
    tests import its modules from, which a run outside pytest (pv mutate's own lookups) must see too."""
    pyproject = root / PYPROJECT
    if not pyproject.is_file():
        return []
    try:
        data = tomllib.loads(read_input(pyproject, MAX_PYPROJECT_BYTES).decode("utf-8"))
    except (InputError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{pyproject}: {err}") from None
    options = data.get("tool", {}).get("pytest", {}).get("ini_options", {})
    paths = options.get("pythonpath", []) if isinstance(options, dict) else []
    return [(root / str(path)).resolve() for path in ([paths] if isinstance(paths, str) else paths)]


def _check(value: Any, kind: str, where: str) -> Any:
    """``value`` of a key of kind ``kind``, as plain str / list of str; ConfigError naming ``where``."""
    if kind in ("path", "module", "optional-path"):
        if value is None and kind in ("module", "optional-path"):
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: expected a list of non-empty strings, got {value!r}")
    return list(value)


def _from_env(name: str, kind: str) -> Any:
    text = os.environ[name]
    if kind in ("path", "module", "optional-path"):
        return _check(text.strip(), kind, f"${name}")
    separator = "," if kind == "modules" else os.pathsep
    return [part.strip() for part in text.split(separator) if part.strip()]


def load_config(start: Path | None = None, root: Path | str | None = None) -> Config:
    """The configuration seen from ``start`` (default: the working directory).

    ``root`` (or ``$PV_ROOT``) names the project folder instead of searching for it.
    """
    named = root if root is not None else os.environ.get(ROOT_ENV) or None
    if named is not None:
        folder = Path(named).expanduser().resolve()
        if not folder.is_dir():
            source = "--root" if root is not None else f"${ROOT_ENV}"
            raise ConfigError(f"{source}: {folder} is not a folder")
        pyproject = folder / PYPROJECT
        table = _read_table(pyproject) if pyproject.exists() else None
        table = {} if table is None else table
    else:
        found = find_project((start or Path.cwd()).resolve())
        if found is None:
            return Config(root=None, source=None, contracts=None)
        pyproject = found / PYPROJECT
        table = _read_table(pyproject)
        if table is None:
            return Config(root=None, source=None, contracts=None)
        folder = found
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{pyproject}: [tool.pv]: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    values: dict[str, Any] = {}
    overridden = set()
    for key, (env, kind) in KEYS.items():
        value = _check(table[key], kind, f"{pyproject}: [tool.pv] {key}") if key in table else DEFAULTS[key]
        if os.environ.get(env, "").strip():
            value = _from_env(env, kind)
            overridden.add(key)
        values[key] = value

    def path(text: str) -> Path:
        return (folder / Path(text).expanduser()).resolve()

    return Config(
        root=folder,
        source=pyproject if pyproject.is_file() else None,
        contracts=path(values["contracts"]),
        modules=tuple(dict.fromkeys(values["modules"])),
        errors=values["errors"],
        falsifiers=tuple(path(p) for p in values["falsifiers"]),
        profiles=tuple(path(p) for p in values["profiles"]),
        reports=path(values["reports"]),
        trusted_keys=tuple(path(p) for p in values["trusted_keys"]),
        mutation_report=None if values["mutation_report"] is None else path(values["mutation_report"]),
        mutation_tests=tuple(path(p) for p in values["mutation_tests"]),
        overridden=frozenset(overridden),
    )


def activate(config: Config) -> Config:
    """Put the project folder first on ``sys.path`` (once), so its modules import."""
    if config.root is not None and str(config.root) not in sys.path:
        sys.path.insert(0, str(config.root))
    return config


def current() -> Config:
    """The configuration of the working directory, activated (read afresh: it is a few small reads)."""
    return activate(load_config())

