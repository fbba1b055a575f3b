"""One error type for bad user input: the CLI prints its single line and exits with status 2."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input, located by file and, where it applies, line and column."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, column: str | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
