"""The errors pv raises on purpose, under one root, :class:`PvError`.

Each error also derives from the built-in exception its callers expect (a value
that is not valid is a ``ValueError``, an unresolvable binding a ``RuntimeError``),
so code catching the built-in keeps working and ``except PvError`` catches them all.
The CLI turns a :class:`PvError` into ``pv <command>: error: <message>`` and its
``exit_code``, never a traceback.
"""

from __future__ import annotations


class PvError(Exception):
    """The root of every error pv raises on purpose; ``exit_code`` is the CLI's status for it."""

    exit_code: int = 2


class UserError(PvError):
    """A mistake in the user's input (argument, file, environment).

    The CLI prints ``pv <command>: error: <message>`` and exits with ``exit_code``
    (2 by default: usage error or unreadable input).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class InvalidValue(PvError, ValueError):
    """A value pv was given that is not valid where it stands (a domain, an expression, a helper argument)."""
