"""Errors the toolbox reports to users, each carrying the exit code of the public contract.

Code that finds a problem raises one of these with a message that says what is wrong, where, and how
to fix it; the CLI prints that one line (no traceback unless --debug) and exits with `exit_code`.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3
EXIT_CANCELLED = 130


class ToolboxError(Exception):
    """Base class: a user-facing failure with a one-line message and an exit code."""

    exit_code = EXIT_RUNTIME

    def __init__(self, message: str, *, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class InputError(ToolboxError):
    """The user's input (dataset, file, weights) failed a check: exit 1."""

    exit_code = EXIT_INPUT


class UsageError(ToolboxError):
    """Options that contradict each other or name things that do not exist: exit 2."""

    exit_code = EXIT_USAGE


class RuntimeFailure(ToolboxError):
    """The environment or a runtime failed (offline download, missing package, parity, NaN, OOM): exit 3."""

    exit_code = EXIT_RUNTIME


class Cancelled(ToolboxError):
    """The job was cancelled by the user (Ctrl-C, UI cancel): exit 130."""

    exit_code = EXIT_CANCELLED
