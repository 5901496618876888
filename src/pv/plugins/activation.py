"""When pv's pytest plugins act: only in a project that uses pv, or when asked on the command line.

A project uses pv when its ``pyproject.toml`` has a ``[tool.pv]`` table (found
from pytest's invocation folder upwards, else from pytest's rootdir upwards, or
named by ``$PV_ROOT``); then its
folder goes on ``sys.path`` (before pytest imports the first conftest file, so that
plain ``pytest`` imports the project's modules as ``python -m pytest`` does) and its
contracts folder is the one pv collects from.
``--pv-contracts DIR`` asks for pv in any folder. Elsewhere every plugin of pv is
inert: it adds its ``--pv-...`` options and nothing else.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pv._util.config import Config, ConfigError, activate, load_config

_CONFIG_KEY = pytest.StashKey[Config]()
CONTRACTS_OPTION = "pv_contracts"


def project(config: pytest.Config) -> Config:
    """The pv configuration of the project pytest runs in (activated, resolved once per process)."""
    if _CONFIG_KEY not in config.stash:
        try:
            found = load_config(Path(config.invocation_params.dir))
            if not found.configured and config.rootpath != Path(config.invocation_params.dir):
                found = load_config(config.rootpath)
            config.stash[_CONFIG_KEY] = activate(found)
        except ConfigError as err:
            raise pytest.UsageError(str(err)) from None
    return config.stash[_CONFIG_KEY]


def _option(config: pytest.Config) -> Path | None:
    value = config.getoption(CONTRACTS_OPTION, default=None)
    return None if not value else (Path(config.invocation_params.dir) / value).resolve()


def active(config: pytest.Config) -> bool:
    """Whether pv acts in this run: a configured project, or ``--pv-contracts``."""
    return _option(config) is not None or project(config).configured


def contracts_folder(config: pytest.Config) -> Path | None:
    """``--pv-contracts``, else the project's contracts folder (None outside a pv project)."""
    option = _option(config)
    return option if option is not None else project(config).contracts
