"""``regmix realtext build OUT_DIR [--preset full|small] [--no-install]``: the real-text corpus
from Debian packages (:mod:`regmix_plugin.realtext`), with a summary table of its manifest."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from regmix_plugin.commands import say
from regmix_plugin.textable import format_table


def summary(manifest: dict[str, Any]) -> str:
    """A table of documents and tokens per domain and of the target set."""
    rows = []
    for name, rec in manifest["domains"].items():
        train, valid = rec["train"], rec["valid"]
        rows.append([name, str(train["documents"]), str(train["tokens"]), str(valid["tokens"])])
    target = manifest["target"]
    footer = [
        [
            f"target:{target['name']}",
            str(target["set"]["documents"]),
            str(target["set"]["tokens"]),
            "",
        ]
    ]
    header = ["domain", "train docs", "train tokens", "valid tokens"]
    return format_table(header, rows, footer=footer)


def configure_realtext(parser: argparse.ArgumentParser) -> None:
    """Arguments of the corpus builder."""
    from regmix_plugin.realtext.build import PRESETS

    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="install packages, extract, tokenise, write prefixes")
    build.add_argument("out_dir", help="output folder (.bin/.idx, tokenizer.json, manifest.json)")
    build.add_argument("--preset", choices=sorted(PRESETS), default="full")
    build.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")


def command_realtext(args: argparse.Namespace) -> int:
    """Build the corpus and print its summary."""
    from regmix_plugin.realtext.build import PRESETS, build_corpus

    cfg = PRESETS[args.preset]()
    if args.no_install:
        cfg = dataclasses.replace(cfg, install=False)
    say(summary(build_corpus(args.out_dir, cfg)))
    return 0
