"""The ``imprint`` command: one subcommand per stage of the flow, all built the same way.

Each subcommand lives with its stage, in a module that provides ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen command's module is
imported, so ``imprint verify`` never loads torch. This module is the one error boundary:
an expected failure (:class:`imprint.errors.ImprintError`, a missing file) ends in one line
that says what to do and a non-zero exit, with the traceback only under ``--debug``.

Every entry point is ``main(argv=None)`` so tests call it in-process.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

from imprint import __version__
from imprint.errors import ImprintError
from imprint.logs import setup_logging

EPILOG = """\
The flow: ingest -> pairs -> train -> composite/eval. Run `imprint COMMAND --help` for one stage.
Add --debug to any command for tracebacks and debug logs.
"""


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # provides DESCRIPTION, add_arguments(parser), run(args) -> int
    help: str


COMMANDS = (
    Command("ingest", "imprint.ingest.cli", "official dataset layouts and downloaded sources -> object records"),
    Command("pairs", "imprint.pairing.cli", "records -> stage-1 view pairs and stage-2 compositing pairs (shards)"),
    Command("verify", "imprint.shards.verify", "check every shard against its manifest (hashes, rows, schema, images)"),
    Command("preview", "imprint.shards.preview", "write an HTML contact sheet of shard samples"),
    Command("train", "imprint.train.cli", "train stage 1 (identity encoder) or stage 2 (compositing generator)"),
    Command("composite", "imprint.eval.composite", "composite an object into a background with a stage-2 model"),
    Command("eval", "imprint.eval.run", "score models (identity, realism, background, shape) into a report"),
    Command("bench", "imprint.bench", "benchmarks against their floors; results to bench/results/*.json"),
)
_BY_NAME = {c.name: c for c in COMMANDS}

# Failures of the user's environment that need no traceback: the path named is the whole story.
_EXPECTED_OS_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


def _chosen(argv: Sequence[str]) -> Command | None:
    """The command named in ``argv`` (its first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            return _BY_NAME.get(word)
    return None


def build_parser(chosen: Command | None = None) -> tuple[argparse.ArgumentParser, ModuleType | None]:
    """The ``imprint`` parser, with the full arguments of ``chosen`` only (its module is imported)."""
    parser = argparse.ArgumentParser(
        prog="imprint", description="Build IMPRINT's training data at scale and train its two-stage model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"imprint {__version__}")
    parser.add_argument("--debug", action="store_true", help="tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    module = None
    for command in COMMANDS:
        if command is not chosen:
            sub.add_parser(command.name, help=command.help, add_help=False)
            continue
        module = importlib.import_module(command.module)
        p = sub.add_parser(command.name, help=command.help, description=module.DESCRIPTION,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="tracebacks and debug logs")
        module.add_arguments(p)
    return parser, module


def _quiet_environment(debug: bool = False) -> None:
    """Keep third-party libraries from phoning home or printing banners on every command.

    transformers, diffusers and huggingface_hub set their own loggers' levels from these variables when they
    are imported (after :func:`setup_logging`), so their chatter is turned down here, not in ``imprint.logs``.
    """
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not debug:
        for var in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY", "HF_HUB_VERBOSITY"):
            os.environ.setdefault(var, "error")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _quiet_environment(debug="--debug" in argv)
    chosen = _chosen(argv)
    parser, module = build_parser(chosen)
    args = parser.parse_args(argv)
    debug = bool(getattr(args, "debug", False))
    setup_logging(debug)
    assert module is not None  # parse_args exits unless a known command was named
    try:
        return int(module.run(args))
    except KeyboardInterrupt:
        print(f"imprint {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except (ImprintError, *_EXPECTED_OS_ERRORS) as exc:
        if debug:
            traceback.print_exc()
        code = exc.exit_code if isinstance(exc, ImprintError) else 1
        print(f"imprint {args.command}: {one_line(exc)}", file=sys.stderr)
        logging.getLogger("imprint").debug("exit status %d", code)
        return code


def one_line(exc: BaseException) -> str:
    """The message of an expected failure, folded onto one line."""
    text = " ".join(str(exc).split()) if not isinstance(exc, OSError) or not exc.filename else \
        f"{exc.strerror or exc}: {exc.filename}"
    return text or type(exc).__name__


def run_command(name: str, argv: Sequence[str] | None = None) -> int:
    """``imprint NAME ARGV...``: the ``main(argv=None)`` of each command's module."""
    return main([name, *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
