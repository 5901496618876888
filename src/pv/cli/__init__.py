"""The `pv` command line: a table of subcommands, each imported only when invoked.

A subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> int``.
Built-in commands are listed in ``COMMANDS``; other packages add commands
through the ``pv.commands`` entry-point group (loaded only when a name is not
built in, or for ``pv --help``), so ``pv validate`` never pays for torch.

Every command takes ``--root DIR``: the project folder whose ``pyproject.toml``
``[tool.pv]`` table configures pv (default: found from the working directory
upwards; also ``$PV_ROOT``).

Exit codes: 0 success, 1 the checked thing failed, 2 usage error or unreadable
input, 130 interrupted, 141 output pipe closed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from types import ModuleType

from pv import __version__
from pv._util.config import ROOT_ENV
from pv._util.errors import PvError
from pv._util.text import shown

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("pv.cli.validate", "check contracts against the schema and the rules"),
    "status": ("pv.cli.status", "counts and QA gate of one contract"),
    "graph": ("pv.cli.graph", "the depends_on graph of a set of contracts"),
    "diff": ("pv.cli.diff", "semantic diff of two contract versions, with a version bump"),
    "check": ("pv.cli.check", "run the compiled obligation checks and print verdicts"),
    "compile": ("pv.cli.compile", "write the compiled checks as Python test modules"),
    "vacuity": ("pv.cli.vacuity", "run every falsifier against its mutants; all must fail"),
    "mutate": ("pv.cli.mutate", "automatic mutants of the bound and covered code; tests must kill them"),
    "gate": ("pv.cli.gate", "decide QA gates and the release from gate reports"),
    "verify": ("pv.cli.verify", "the main job: validate, check, falsify, report, gate"),
    "key": ("pv.cli.key", "make, rotate or show this host's key for signing gate reports"),
}

ENTRY_POINT_GROUP = "pv.commands"


def _plugin_commands() -> dict[str, str]:
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _load(name: str) -> ModuleType | None:
    if name in COMMANDS:
        return importlib.import_module(COMMANDS[name][0])
    target = _plugin_commands().get(name)
    if target is None:
        return None
    return importlib.import_module(target.split(":")[0])


def _summary(name: str) -> str:
    """The first line of a plugin command's docstring (its module is imported, not run)."""
    try:
        module = _load(name)
    except Exception as err:  # a broken plugin must not break `pv --help`
        return f"(cannot be loaded: {type(err).__name__}: {err})"
    return (module.__doc__ or "").strip().splitlines()[0] if module and module.__doc__ else ""


def _usage() -> str:
    lines = [f"usage: pv <command> [options]   (pv {__version__})", "", "commands:"]
    plugins = sorted(set(_plugin_commands()) - set(COMMANDS))
    width = max(len(n) for n in [*COMMANDS, *plugins])
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    if plugins:
        lines += ["", "plugin commands:"] + [f"  {name:<{width}}  {_summary(name)}" for name in plugins]
    lines += ["", "Run `pv <command> --help` for the options of a command."]
    return "\n".join(lines)


def _escape_undecodable_output() -> None:
    """Let stdout show a file name's undecodable bytes as ``\\udcff`` escapes (as messages
    do) where its encoding would raise on them."""
    if getattr(sys.stdout, "errors", None) == "strict" and hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pv`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    _escape_undecodable_output()
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"pv {__version__}")
        return 0
    name, rest = args[0], args[1:]
    module = _load(name)
    if module is None:
        print(f"pv: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    help_ = COMMANDS[name][1] if name in COMMANDS else _summary(name)
    parser = argparse.ArgumentParser(prog=f"pv {name}", description=module.__doc__ or help_)
    module.add_arguments(parser)
    parser.add_argument("--root", metavar="DIR", default=None,
                        help="the project folder (its pyproject.toml [tool.pv] configures pv; "
                             "default: found from the working directory upwards, or $PV_ROOT)")
    try:
        parsed = parser.parse_args(rest)
    except SystemExit as exit_:  # argparse already printed its message
        return int(exit_.code or 0)
    if parsed.root is not None and not os.path.isdir(parsed.root):
        print(f"pv {name}: error: --root: {parsed.root} is not a folder", file=sys.stderr)
        return 2
    before = os.environ.get(ROOT_ENV)
    if parsed.root is not None:
        os.environ[ROOT_ENV] = os.path.abspath(parsed.root)  # also seen by the pytest runs a command starts
    try:
        return int(module.run(parsed))
    except PvError as err:
        print(f"pv {name}: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print(f"pv {name}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`pv check | head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as err:  # a file or device the command met failed it: bad input, not a defect
        where = f"{shown(err.filename)}: " if err.filename else ""
        print(f"pv {name}: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"pv {name}: error: out of memory (an input too large for this machine)", file=sys.stderr)
        return 2
    finally:
        if before is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = before
