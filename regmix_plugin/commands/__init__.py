"""The command layer: argument parsing and console output of every ``regmix`` subcommand.

Each module here defines ``configure_<verb>(parser)`` and ``command_<verb>(args) -> int`` for its
subcommands (registered in :mod:`regmix_plugin.cli`). A command builds the study once
(:func:`load_study_args`), calls the same stage function ``regmix run`` calls
(:mod:`regmix_plugin.stages`), and prints what happened. Nothing below this layer prints.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from regmix_plugin.study import StudyConfig

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _QuietConsole(logging.Filter):
    """What reaches the console without ``-v``: our warnings and errors, others' errors only.

    Library chatter (megatron-core's INFO lines, Transformer Engine / Apex fallbacks, deprecation
    warnings of dependencies) goes to the run's log file (:func:`attach_log_file`), not here.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("regmix_plugin"):
            return record.levelno >= logging.WARNING
        return record.levelno >= logging.ERROR


def configure_logging(*, verbose: bool, chatty: bool = False) -> None:
    """Route logging and Python warnings: a quiet console unless ``verbose`` (or ``chatty``)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
    if not (verbose or chatty):
        console.addFilter(_QuietConsole())
    root.addHandler(console)
    logging.captureWarnings(True)


def attach_log_file(path: Path) -> None:
    """Also write every log record (INFO and up, all libraries, warnings) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # delay: the file is created by the first record, so a command refused before it logs
    # anything leaves no log file behind.
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)


def add_study_arguments(parser: argparse.ArgumentParser, *, optional: bool = False) -> None:
    """The study config (positional) and ``--set section.key=value`` overrides."""
    if optional:
        parser.add_argument("config", nargs="?", help="study YAML")
    else:
        parser.add_argument("config", help="study YAML (see configs/quickstart.yaml)")
    add_set_argument(parser)


def add_set_argument(parser: argparse.ArgumentParser) -> None:
    """``--set section.key=value`` (repeatable), applied on top of the config file."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set proxy.num_tokens=1e6 (repeatable; YAML values)",
    )


def load_study_args(args: argparse.Namespace, config: str | None = None) -> StudyConfig:
    """The study named by ``args.config`` (or ``config``), with ``args.overrides`` applied."""
    from regmix_plugin.study import load_study

    return load_study(config or args.config, getattr(args, "overrides", []))


def say(text: str = "") -> None:
    """A line for the person at the console (stdout)."""
    print(text, flush=True)


def warn(text: str) -> None:
    """A line for the person at the console (stderr)."""
    print(text, file=sys.stderr, flush=True)
