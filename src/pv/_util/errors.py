"""Errors that reach the user as one clear message, never as a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input (argument, file, environment).

    The CLI prints ``pv <command>: error: <message>`` and exits with ``exit_code``
    (2 by default: usage error or unreadable input).
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
