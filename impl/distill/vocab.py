"""Vocabulary alignment between a teacher and a student.

Two rules decide whether a pair can be distilled and how:

- **Tokens, not sizes.** The student's token list must be a prefix of the
  teacher's: entry ``i`` of both lists is the same string for every row ``i`` of
  the student. Then the teacher's logits are cut to the student's rows
  (``truncate_logits``) where the teacher hands them out, before any softmax,
  so that softmax renormalises over the shared tokens.
- **Never widen.** A student with more rows than the teacher is refused: the
  teacher has no logits for the extra rows (``effective_vocab``).

What "prefix" means with padding. Converters pad a token list up to the
embedding's row count with ``[PAD<i>]`` entries, which are rows, not real
tokens. The comparison runs over rows: when a model's embedding has more rows
than its token list, the list is first padded the same way (``[PAD<i>]`` at row
``i``), so a padded and an unpadded file of the same model compare equal. Padding
entries are then compared like any other entry, which is deliberate:

- teacher padding beyond the student's rows is cut away: the common case
  (Qwen2.5-7B: 152064 rows, Qwen2.5-0.5B: 151936);
- padding on both sides at the same row matches (the same ``[PAD<i>]`` name);
- a student padding row facing a real teacher token is a difference: the
  student would learn to put probability on a row it cannot decode;
- a teacher padding row facing a real student token is a difference: the
  teacher's row is untrained and carries no meaning.

Merges, token types (over the shared rows), ``model``, ``pre`` and the other
``tokenizer.ggml.*`` keys are compared too and listed in ``differing_keys``;
they are reported, not refused, because a teacher with a larger vocabulary
legitimately has more merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from distill.errors import VocabAlignmentError
from distill.gguf_file import read_header
from distill.tokenizer import TOKENIZER_PREFIX, Tokenizer, tokenizer_from_metadata

#: What a contract may bind here (the pure functions the contracts check); see pv's binding rule.
__pv_bindable__ = ("effective_vocab", "truncate_logits", "first_difference")

if TYPE_CHECKING:
    import torch

EMBEDDING_TENSOR = "token_embd.weight"


def effective_vocab(native: int, target: int | None) -> int:
    """The number of logits a teacher with ``native`` rows hands out for a ``target`` (None: all)."""
    if native < 1:
        raise VocabAlignmentError(f"teacher vocabulary size must be >= 1, got native={native}")
    if target is None:
        return native
    if target < 1:
        raise VocabAlignmentError(f"target vocabulary size must be >= 1, got target={target} (native={native})")
    if target > native:
        raise VocabAlignmentError(
            f"target vocabulary {target} is larger than the teacher's native vocabulary {native}: "
            "a student larger than the teacher cannot be aligned"
        )
    return target


def truncate_logits(logits: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` entries of the last axis (a view); ``n`` must not exceed the width."""
    return logits[..., : effective_vocab(logits.shape[-1], n)]


@dataclass(frozen=True)
class VocabComparison:
    """How a student's token rows relate to a teacher's.

    ``first_diff`` is the first row where the lists differ, or, when one list
    ends first and the student is the longer, the teacher's length; it is None
    exactly when the student is a prefix of the teacher. ``teacher_token`` and
    ``student_token`` are the entries at ``first_diff``; ``teacher_token`` is None
    when the teacher's list ends there (the student's never ends before ``first_diff``).
    """

    teacher_len: int
    student_len: int
    first_diff: int | None
    teacher_token: str | None
    student_token: str | None
    differing_keys: tuple[str, ...]

    @property
    def student_is_teacher_prefix(self) -> bool:
        return self.first_diff is None

    @property
    def truncated_rows(self) -> int | None:
        """Teacher rows cut away by alignment (0: none), or None when the pair cannot be aligned."""
        return self.teacher_len - self.student_len if self.student_is_teacher_prefix else None

    def to_json(self) -> dict[str, Any]:
        return {
            "teacher_len": self.teacher_len,
            "student_len": self.student_len,
            "first_diff": self.first_diff,
            "student_is_teacher_prefix": self.student_is_teacher_prefix,
            "teacher_token": self.teacher_token,
            "student_token": self.student_token,
            "truncated_rows": self.truncated_rows,
            "differing_keys": list(self.differing_keys),
        }


def padded_tokens(tokens: list[str], rows: int | None, who: str) -> list[str]:
    """``tokens`` padded with ``[PAD<i>]`` entries up to ``rows`` (None: unchanged)."""
    if rows is None:
        return tokens
    if rows < len(tokens):
        raise VocabAlignmentError(f"{who} has {rows} embedding rows but {len(tokens)} tokens")
    return tokens + [f"[PAD{i}]" for i in range(len(tokens), rows)]


def first_difference(teacher: list[str], student: list[str]) -> int | None:
    """The first row where two token lists differ (the teacher's length when the student is
    longer and agrees on every shared row), or None when the student is a prefix of the teacher."""
    shared = min(len(teacher), len(student))
    if teacher[:shared] == student[:shared]:  # C-speed comparison; locate the index only on a mismatch
        return None if len(student) <= len(teacher) else shared
    return next(i for i in range(shared) if teacher[i] != student[i])


def _same_value(a: Any, b: Any) -> bool:
    """Equal metadata values; numeric arrays (numpy views of the files) compared item by item."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and np.array_equal(a, b)
    return bool(a == b)


def _differing_keys(teacher: Tokenizer, student: Tokenizer, shared: int) -> tuple[str, ...]:
    pairs = {
        "model": (teacher.model, student.model),
        "pre": (teacher.pre, student.pre),
        "merges": (teacher.merges, student.merges),
        "token_type": (teacher.token_types[:shared], student.token_types[:shared]),
    }
    differing = [TOKENIZER_PREFIX + name for name, (t, s) in pairs.items() if t != s]
    extra_keys = sorted(set(teacher.extra) | set(student.extra))
    differing += [key for key in extra_keys if not _same_value(teacher.extra.get(key), student.extra.get(key))]
    return tuple(differing)


def compare_tokenizers(
    teacher: Tokenizer,
    student: Tokenizer,
    *,
    teacher_rows: int | None = None,
    student_rows: int | None = None,
) -> VocabComparison:
    """Compare two tokenizers row by row (lists padded to their embedding rows when given)."""
    t_tokens = padded_tokens(teacher.tokens, teacher_rows, "teacher")
    s_tokens = padded_tokens(student.tokens, student_rows, "student")
    first = first_difference(t_tokens, s_tokens)
    shared = min(len(t_tokens), len(s_tokens))
    return VocabComparison(
        teacher_len=len(t_tokens),
        student_len=len(s_tokens),
        first_diff=first,
        teacher_token=None if first is None or first >= len(t_tokens) else t_tokens[first],
        student_token=None if first is None else s_tokens[first],
        differing_keys=_differing_keys(teacher, student, shared),
    )


def read_vocab(path: str | Path) -> tuple[Tokenizer, int | None]:
    """The tokenizer of a GGUF file and its embedding rows (None for a vocabulary-only file)."""
    header = read_header(path)
    rows = next((t.ggml_shape[1] for t in header.tensors if t.name == EMBEDDING_TENSOR), None)
    return tokenizer_from_metadata(header.path, header.metadata), rows


def compare_vocabs(teacher_path: str | Path, student_path: str | Path) -> VocabComparison:
    """Compare the vocabularies of two GGUF files (GGUFFormatError when one cannot be read)."""
    teacher, teacher_rows = read_vocab(teacher_path)
    student, student_rows = read_vocab(student_path)
    return compare_tokenizers(teacher, student, teacher_rows=teacher_rows, student_rows=student_rows)


def require_shared_prefix(comparison: VocabComparison) -> None:
    """Raise VocabAlignmentError unless the student's rows are a prefix of the teacher's."""
    c = comparison
    if c.first_diff is None:
        return
    if c.first_diff < min(c.teacher_len, c.student_len):
        raise VocabAlignmentError(
            f"teacher and student vocabularies differ at token index {c.first_diff}: "
            f"teacher {c.teacher_token!r}, student {c.student_token!r} "
            f"(teacher {c.teacher_len} rows, student {c.student_len}); the student's tokens must be "
            "a prefix of the teacher's"
        )
    raise VocabAlignmentError(
        f"the student has {c.student_len} vocabulary rows, more than the teacher's {c.teacher_len} "
        f"(first student-only token at index {c.first_diff}: {c.student_token!r}); "
        "a student larger than the teacher cannot be aligned"
    )
