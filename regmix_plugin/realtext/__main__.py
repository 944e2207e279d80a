"""``python -m regmix_plugin.realtext build OUT_DIR [--preset full|small] [--no-install]``.

The entry point of the corpus builder: parses arguments, configures logging, prints a summary
table of the manifest. The work is done by :func:`regmix_plugin.realtext.build_corpus`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from regmix_plugin.errors import RegMixError
from regmix_plugin.realtext.build import PRESETS, build_corpus


def summary(manifest: dict) -> str:
    """A table of documents and tokens per domain and of the target set."""
    rows = [f"{'domain':<16}{'train docs':>11}{'train tokens':>14}{'valid tokens':>14}"]
    for name, rec in manifest["domains"].items():
        train, valid = rec["train"], rec["valid"]
        rows.append(f"{name:<16}{train['documents']:>11}{train['tokens']:>14}{valid['tokens']:>14}")
    target = manifest["target"]
    rows.append(
        f"{'target:' + target['name']:<16}{target['set']['documents']:>11}"
        f"{target['set']['tokens']:>14}{'':>14}"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and build; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m regmix_plugin.realtext", description="build the real-text corpus"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="install packages, extract, tokenise, write prefixes")
    build.add_argument("out_dir", help="output folder (.bin/.idx, tokenizer.json, manifest.json)")
    build.add_argument("--preset", choices=sorted(PRESETS), default="full")
    build.add_argument("--no-install", action="store_true", help="fail instead of running apt-get")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cfg = PRESETS[args.preset]()
    if args.no_install:
        import dataclasses

        cfg = dataclasses.replace(cfg, install=False)
    try:
        manifest = build_corpus(args.out_dir, cfg)
    except RegMixError as exc:
        print(f"realtext build: error: {exc}", file=sys.stderr)
        return 2
    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
