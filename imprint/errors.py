"""Expected failures: what the CLI turns into one line that says what to do.

Raise an :class:`ImprintError` (or a subclass) for anything a user can fix: a wrong path, a layout
that is not the official one, a hub id that cannot be reached, a dead Ray address, a bad config key.
Its message is the whole story: what was wrong and what to do. ``imprint`` prints it on one line and
exits with ``exit_code``, with no traceback unless ``--debug``. Any other exception is a bug: the CLI
prints its traceback.
"""

from __future__ import annotations


class ImprintError(Exception):
    """An expected failure; ``str(exc)`` says what happened and what to do."""

    exit_code: int = 1


class UsageError(ImprintError):
    """Bad arguments or settings (exit status 2, like argparse)."""

    exit_code = 2
