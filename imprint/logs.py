"""One logging setup, made by the CLI only (library modules never configure logging at import).

Modules log through ``logging.getLogger(__name__)``: progress and summaries at INFO, details at
DEBUG. :func:`setup_logging` sends the ``imprint`` loggers to stderr as plain lines (``--debug``: with
DEBUG lines and the logger's name) and quiets the third-party loggers that would otherwise speak on
every command.
"""

from __future__ import annotations

import logging
import sys

# Third-party loggers that print banners or per-call chatter at INFO/WARNING on every command. Importing Ray
# sets its "ray" logger back to INFO (after this setup, since Ray is imported only when a job starts), so its
# sub-packages are quieted too: their level is what their records obey. Among them is the token-auth banner
# that every local Ray prints ("Token authentication is enabled for this Ray cluster ...").
QUIET = ("ray", "ray._private", "ray._common", "ray.util", "ray.runtime_env", "ray.autoscaler", "filelock",
         "urllib3", "httpx", "httpcore", "PIL", "matplotlib", "accelerate", "diffusers", "transformers",
         "huggingface_hub", "torch.distributed")


class _Plain(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {text}"


def setup_logging(debug: bool = False) -> None:
    """Configure the ``imprint`` loggers for a command (idempotent: a second call replaces the first)."""
    root = logging.getLogger("imprint")
    for handler in list(root.handlers):
        if getattr(handler, "_imprint", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._imprint = True  # type: ignore[attr-defined]
    handler.setFormatter(_Plain("%(name)s: %(message)s" if debug else "%(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False
    if not debug:
        for name in QUIET:
            logging.getLogger(name).setLevel(logging.ERROR)
