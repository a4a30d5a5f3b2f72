"""Error types shared by every stage.

`SpecError` is a user mistake: the CLI prints its one-line message and exits 2.
Anything else escaping the compiler is a bug in archc and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """A place in a source file; line and column are 1-based."""

    file: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.col is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.col}"


class _Located:
    """A message about a place in a spec: `file:line:col: [label]message`."""

    label = ""

    def __init__(self, message: str, where: Location | None = None):
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.label}{self.message}" if self.where else f"{self.label}{self.message}"


class SpecError(_Located, Exception):
    """A mistake in a spec (or a command-line override), located where possible."""


class SpecWarning(_Located, UserWarning):
    """Something in a spec that is valid but probably a mistake (a parameter nothing uses)."""

    label = "warning: "
