"""Write the compiled checks of contracts as readable Python test modules (one per contract,
``test_pvc_<contract>.py``) that call the same runtime as `pv check` and `pytest contracts/`.
The output is deterministic; nothing is written unless every check compiles."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pv._util.errors import UserError
from pv._util.text import shown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="contract files or folders")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for the test modules")


def run(args: argparse.Namespace) -> int:
    from pv.checks.compiling import collect_contracts, compile_document
    from pv.checks.generated import check_module, module_name, render_module
    from pv._util.files import write_atomic

    found = collect_contracts(args.paths)
    if found.load_errors:
        for error in found.load_errors:
            print(f"cannot load: {error}", file=sys.stderr)
        raise UserError(f"{len(found.load_errors)} files cannot be loaded; nothing written", exit_code=1)
    modules: dict[str, str] = {}
    invalid = []
    for doc in found.documents:
        compiled = compile_document(doc)
        invalid += [(c, issue) for c in compiled for issue in c.issues]
        name = module_name(doc.stem)
        if name in modules:
            raise UserError(f"two contracts compile to {name}: give them different file names")
        modules[name] = render_module(doc, compiled)
        broken = check_module(name, modules[name])
        if broken is not None:
            raise UserError(f"{doc.path}: the module {name} would not import ({broken}); nothing written", exit_code=1)
    if invalid:
        for check, issue in invalid:
            print(f"{check.unit.path}:{check.unit.line}: {check.obligation}: {issue.message}", file=sys.stderr)
        raise UserError(f"{len(invalid)} problems in check blocks (see `pv validate`); nothing written", exit_code=1)
    output = Path(args.output)
    if output.is_symlink():
        raise UserError(f"{shown(output)}: is a symbolic link; give the folder itself")
    if output.exists() and not output.is_dir():
        raise UserError(f"{shown(output)}: exists and is not a folder")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{output}: cannot create the folder: {err.strerror or err}") from None
    for name, text in sorted(modules.items()):
        write_atomic(output / name, text, inputs=[doc.path for doc in found.documents])
    print(f"wrote {len(modules)} modules to {output}")
    return 0
