"""``python -m regmix_plugin.realtext build OUT_DIR [--preset full|small] [--no-install]``.

The entry point of the corpus builder: parses arguments, configures logging, prints a summary
table of the manifest. The work is done by :func:`regmix_plugin.realtext.build_corpus`.
``configure_realtext``/``command_realtext`` follow the ``regmix`` CLI's convention, so a
``regmix realtext build ...`` subcommand can map to them.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from typing import Any

from regmix_plugin.errors import RegMixError
from regmix_plugin.realtext.build import PRESETS, build_corpus


def summary(manifest: dict[str, Any]) -> str:
    """A table of documents and tokens per domain and of the target set."""
    rows = [f"{'domain':<20}{'train docs':>11}{'train tokens':>14}{'valid tokens':>14}"]
    for name, rec in manifest["domains"].items():
        train, valid = rec["train"], rec["valid"]
        rows.append(f"{name:<20}{train['documents']:>11}{train['tokens']:>14}{valid['tokens']:>14}")
    target = manifest["target"]
    rows.append(
        f"{'target:' + target['name']:<20}{target['set']['documents']:>11}"
        f"{target['set']['tokens']:>14}{'':>14}"
    )
    return "\n".join(rows)


def configure_realtext(parser: argparse.ArgumentParser) -> None:
    """Arguments of the corpus builder."""
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="install packages, extract, tokenise, write prefixes")
    build.add_argument("out_dir", help="output folder (.bin/.idx, tokenizer.json, manifest.json)")
    build.add_argument("--preset", choices=sorted(PRESETS), default="full")
    build.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")


def command_realtext(args: argparse.Namespace) -> int:
    """Build the corpus and print its summary; user errors propagate as RegMixError."""
    cfg = PRESETS[args.preset]()
    if args.no_install:
        cfg = dataclasses.replace(cfg, install=False)
    print(summary(build_corpus(args.out_dir, cfg)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and build; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m regmix_plugin.realtext", description="build the real-text corpus"
    )
    configure_realtext(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        return command_realtext(args)
    except RegMixError as exc:
        print(f"realtext {args.action}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
