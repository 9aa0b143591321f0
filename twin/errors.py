"""Errors the platform reports to people: what went wrong and what to do about it."""

from __future__ import annotations


class TwinError(Exception):
    """A failure with a one-line cause and a one-line fix, shown without a traceback."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message if not fix else f"{message} Fix: {fix}")
        self.message = message
        self.fix = fix
