"""The error every ``smpfast`` subcommand raises for a user's mistake."""

from __future__ import annotations


class CliError(Exception):
    """A user-facing failure: printed as ``smpfast: error: ...``, exit code 1."""
