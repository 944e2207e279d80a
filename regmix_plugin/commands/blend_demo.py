"""``regmix blend-demo``: the exact-ratio sampler inside megatron-core's builder, on a small
real corpus, with its per-domain deviation table."""

from __future__ import annotations

import argparse
from pathlib import Path

from regmix_plugin.commands import say


def configure_blend_demo(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``regmix blend-demo``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("runs/blend-demo"),
        help="folder for the demo corpus and index cache (default: runs/blend-demo)",
    )


def command_blend_demo(args: argparse.Namespace) -> int:
    """Run the demo and print its table."""
    from regmix_plugin.blend_demo import format_table, run_blend_demo
    from regmix_plugin.io import check_output_folder

    check_output_folder(args.out, "--out")
    rows = run_blend_demo(Path(args.out))
    total = sum(r.realised for r in rows)
    say(f"Exact-ratio blend of {total} samples over {len(rows)} domains ({args.out}):\n")
    say(format_table(rows))
    return 0
