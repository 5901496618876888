"""The depends_on graph of a set of contracts, as text, Graphviz dot, Mermaid or JSON.

Dependencies that are not among the files given are marked missing. Exit 0,
1 when the graph has a cycle (each cycle is printed on standard error), 2
when a path does not exist or a file cannot be read.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="DIR", help="contract folders or files")
    parser.add_argument("--format", choices=("text", "dot", "mermaid", "json"), default="text",
                        help="output format (default: text)")


def run(args: argparse.Namespace) -> int:
    from pv._util.errors import UserError
    from pv.contracts.graph import build_graph, render
    from pv.contracts.loading import LoadError, collect_paths, load_document

    docs = []
    for path in collect_paths(args.paths):
        try:
            docs.append(load_document(path))
        except LoadError as err:
            raise UserError(f"cannot build the graph: {err.finding.format_text()}", exit_code=2) from None
    graph = build_graph(docs)
    print(render(graph, args.format))
    cycles = graph.cycles()
    for cycle in cycles:
        print(f"pv graph: cycle: {' -> '.join(cycle)}", file=sys.stderr)
    return 1 if cycles else 0
