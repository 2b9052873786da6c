"""Errors every stage may raise; the CLI turns them into exit codes and plain messages."""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix (bad path, bad option, unreadable file): exit code 2."""


class InputFileError(UserError):
    """A whole input file cannot be read; names the file and what was expected."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.detail = message
