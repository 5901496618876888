"""Errors of the distillation stack that a user can cause and must be told about clearly."""

from __future__ import annotations


class DistillError(Exception):
    """Base class: a bad file, a bad argument, an incompatible teacher/student pair.

    The message names the file, tensor, key or argument and what was expected.
    """


class GGUFFormatError(DistillError):
    """A GGUF file that is truncated, has a wrong magic, bad sizes, or missing keys."""


class TokenizerError(DistillError):
    """A GGUF tokenizer that cannot tokenize text here (unknown pre-tokenizer, no merges, not BPE)."""


class QuantError(DistillError):
    """Quantized data that cannot be what it claims (bad length, non-finite block scales)."""


class VocabAlignmentError(DistillError):
    """Teacher and student vocabularies cannot be aligned (sizes or tokens)."""


class BackendSelectionError(DistillError):
    """An invalid teacher backend was requested."""


class FrozenTeacherError(DistillError):
    """Something tried to train, or take gradients through, the frozen teacher."""


class TrainingDiverged(DistillError):
    """The loss became NaN or Inf."""


class KernelUnavailableError(DistillError):
    """A Triton kernel was requested where it cannot run (no triton, or a CPU tensor outside the interpreter)."""


class InsufficientMemoryError(DistillError):
    """The teacher cannot fit next to the student's training state with any backend."""


class CheckpointRejected(DistillError):
    """A student checkpoint that cannot be evaluated: unreadable, of the wrong shapes or vocabulary, NaN or Inf
    or constant weights. An evaluation fails on it with this reason (it is not a usage error)."""
