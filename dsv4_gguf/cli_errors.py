"""One-line CLI error messages shared by every `dsv4-gguf` subcommand (the main CLI and `eval`)."""

from __future__ import annotations

__all__ = ["UsageError", "error_message"]

_OS_FIX = {
    FileNotFoundError: "no such file or folder; check the path",
    IsADirectoryError: "is a folder; give a file",
    NotADirectoryError: "a part of the path is not a folder; check the path",
    PermissionError: "permission denied; check its permissions or choose another path",
}


class UsageError(ValueError):
    """A command line that cannot run as given (a missing or conflicting option): exit status 2, as argparse's."""


def error_message(e: BaseException) -> str:
    """The one-line message of a handled error: the library's own, or for an OSError that names a file
    (``[Errno 2] No such file or directory: 'x'``) ``x: no such file or folder; check the path``."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        fix = _OS_FIX.get(type(e), e.strerror[:1].lower() + e.strerror[1:])
        return f"{e.filename}: {fix}"
    return str(e)
