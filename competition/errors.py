"""One error type for bad user input: the CLI prints its single line and exits with status 2."""

from __future__ import annotations

import functools
from pathlib import Path


class InputError(Exception):
    """Bad input, located by file and, where it applies, line and column."""

    def __init__(self, path: str | Path, message: str, *, line: int | None = None, column: str | None = None):
        self.path, self.message, self.line, self.column = path, message, line, column
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self):
        """Pickle by the constructor's arguments, so the error crosses intact from the fold process."""
        return functools.partial(InputError, line=self.line, column=self.column), (self.path, self.message)
