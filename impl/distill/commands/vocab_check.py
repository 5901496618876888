"""Compare the token lists of a teacher and a student GGUF file (tokenizer.ggml.tokens).

Exit 0 when the student's tokens are a prefix of the teacher's (the pair can be
distilled, the teacher's logits cut to the student's rows), 1 when they are not
(the first differing index and both tokens are printed), 2 when a file cannot be
read or has fewer embedding rows than tokens. Merges, token types and the other
tokenizer keys are compared and listed too, for information. --json prints one
JSON object, indented by two spaces, that names both files.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from pv._util.errors import UserError

if TYPE_CHECKING:
    from distill.vocab import VocabComparison


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("teacher", metavar="TEACHER.gguf", help="the teacher's GGUF file")
    parser.add_argument("student", metavar="STUDENT.gguf", help="the student's GGUF file")
    parser.add_argument("--json", action="store_true", help="print the comparison as one JSON object")


def run(args: argparse.Namespace) -> int:
    from distill.errors import DistillError
    from distill.vocab import compare_vocabs

    try:
        comparison = compare_vocabs(args.teacher, args.student)
    except DistillError as err:
        raise UserError(str(err)) from None
    if args.json:
        print(json.dumps({"teacher": args.teacher, "student": args.student, **comparison.to_json()}, indent=2))
    else:
        print(format_comparison(comparison, args.teacher, args.student))
    return 0 if comparison.student_is_teacher_prefix else 1


def format_comparison(comparison: VocabComparison, teacher: str, student: str) -> str:
    """The human-readable report of a VocabComparison."""
    c = comparison
    lines = [f"teacher: {teacher} ({c.teacher_len} rows)", f"student: {student} ({c.student_len} rows)"]
    if c.student_is_teacher_prefix:
        cut = f"teacher logits cut from {c.teacher_len} to {c.student_len}" if c.truncated_rows else "no truncation"
        lines.append(f"aligned: the student's tokens are a prefix of the teacher's ({cut})")
    else:
        lines.append(
            f"NOT aligned: first difference at index {c.first_diff}: "
            f"teacher {_token(c.teacher_token)}, student {_token(c.student_token)}"
        )
    if c.differing_keys:
        lines.append(f"other differing tokenizer keys: {', '.join(c.differing_keys)}")
    return "\n".join(lines)


def _token(token: str | None) -> str:
    return "(none: list ended)" if token is None else repr(token)
