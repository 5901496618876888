"""Semantic diff of two versions of a contract, with a semantic-version bump suggestion.

Unlike a textual diff, it reports what changed for whoever relies on the
contract, at the leaf that changed and with its old and new value (tolerance,
formal, bound, prediction, QA gate and executable-check changes included), and
suggests major, minor or patch; the rule is in ``pv.contracts.diff``. Exit 0, or 1
when NEW declares a smaller version bump than its changes need, 2 when a
file cannot be read.
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("old", metavar="OLD", help="the earlier version of the contract")
    parser.add_argument("new", metavar="NEW", help="the later version of the contract")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def run(args: argparse.Namespace) -> int:
    from pv.contracts import diff
    from pv.contracts.loading import load_document
    from pv.contracts.view import document_view

    old, new = document_view(load_document(args.old)), document_view(load_document(args.new))
    changes = diff.diff_contracts(old, new)
    level = diff.suggested_level(changes)
    old_version, new_version = old.version, new.version
    suggested = diff.bump(old_version, level) if old_version else None
    declared = diff.declared_level(old_version, new_version) if old_version and new_version else None
    too_small = declared is not None and not diff.level_at_least(declared, level)
    if args.format == "json":
        print(json.dumps({
            "changes": [{"level": c.level, "where": c.where, "what": c.what} for c in changes],
            "suggested_bump": level, "old_version": old_version, "new_version": new_version,
            "suggested_version": suggested, "declared_bump": declared, "declared_too_small": too_small,
        }, indent=2))
    else:
        for change in changes:
            print(change.format_text())
        line = f"suggested bump: {level}"
        if suggested:
            line += f" ({old_version} -> {suggested})"
        if declared is not None:
            line += f"; declared {old_version} -> {new_version} ({declared})" + (": too small" if too_small else "")
        print(line)
    return 1 if too_small else 0
