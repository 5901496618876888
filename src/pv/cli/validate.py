"""Check contracts against the schema and the rules, all files in one process.

Prints one line per finding, ``path:line:col: error|warning RULE-ID message``
(or JSON, or SARIF 2.1.0 for code-scanning tools), and a summary on standard
error. Exit 0 when there is no error, 1 when there is one, 2 for a usage error
or a file that cannot be read; also 2 when the paths hold no YAML file at all
(nothing validated is never a pass).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="contract files or folders (searched recursively for *.yaml and *.yml; hidden folders skipped)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--format", choices=("text", "json", "sarif"), default="text", help="output format (default: text)")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE (replaced atomically) instead of standard output")


def run(args: argparse.Namespace) -> int:
    from pv._util.errors import UserError
    from pv._util.files import write_atomic
    from pv.contracts.formats import render, summary
    from pv.contracts.loading import collect_paths
    from pv.contracts.validate import validate_paths

    result = validate_paths(args.paths, strict=args.strict)
    if result.files == 0:
        raise UserError(f"no contract files (*.yaml, *.yml) in {', '.join(args.paths)}: nothing to validate")
    report = render(result, args.format)
    if args.output:
        write_atomic(args.output, report, inputs=collect_paths(args.paths), make_parents=False)
    else:
        sys.stdout.write(report)
    print(f"pv validate: {summary(result)}", file=sys.stderr)
    return result.exit_code()
