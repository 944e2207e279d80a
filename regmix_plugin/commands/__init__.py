"""The command layer: argument parsing and console output of every ``regmix`` subcommand.

Each module here defines ``configure_<verb>(parser)`` and ``command_<verb>(args) -> int`` for its
subcommands (registered in :mod:`regmix_plugin.cli`). A command builds the study once
(:func:`load_study_args`), calls the same stage function ``regmix run`` calls
(:mod:`regmix_plugin.stages`), and prints what happened. Nothing below this layer prints.
"""

from __future__ import annotations

import argparse
import sys

from regmix_plugin.study import StudyConfig, load_study


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
    return load_study(config or args.config, getattr(args, "overrides", []))


def say(text: str = "") -> None:
    """A line for the person at the console (stdout)."""
    print(text, flush=True)


def warn(text: str) -> None:
    """A line for the person at the console (stderr)."""
    print(text, file=sys.stderr, flush=True)
