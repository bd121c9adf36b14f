"""The trainer's expected failure."""

from __future__ import annotations

from imprint.errors import ImprintError


class TrainError(ImprintError, RuntimeError):
    """Training cannot go on; the message says what to do."""
