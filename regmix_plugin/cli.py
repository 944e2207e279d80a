"""The ``regmix`` command line: one subcommand per pipeline stage, plus ``run``.

The CLI is thin: each subcommand lives in the command layer (:mod:`regmix_plugin.commands`),
which defines ``configure_<verb>(parser)`` to add its arguments and ``command_<verb>(args) -> int``
to run it.
Modules are imported only when their subcommand runs, so ``regmix --help`` stays fast and a
missing optional dependency only affects the command that needs it. Knobs belong in the YAML
config, not in new flags.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from regmix_plugin.commands import configure_logging
from regmix_plugin.errors import RegMixError

_STAGES = "regmix_plugin.commands.study_stages"
_SWEEPS = "regmix_plugin.commands.sweeps"
#: subcommand -> (module, verb, one-line help). The module defines configure_<verb>/command_<verb>.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "init": (_STAGES, "init", "write a study YAML from a folder of .bin/.idx prefixes"),
    "domains": (_STAGES, "domains", "print the domain catalogue as a table"),
    "sample": (_STAGES, "sample", "draw the proxy mixtures (mixtures.csv)"),
    "train-proxy": (_STAGES, "train_proxy", "train one proxy model"),
    "sweep": (_SWEEPS, "sweep", "train one proxy per mixture via a launcher"),
    "status": (_SWEEPS, "status", "show a sweep's done/running/failed runs"),
    "collect": (_SWEEPS, "collect", "gather proxy results into a table"),
    "fit": (_STAGES, "fit", "fit regressors: mixture weights -> metrics"),
    "predict": (_STAGES, "predict", "predict metrics for a mixtures table"),
    "optimize": (_STAGES, "optimize", "simulate candidates, pick the mixture"),
    "emit": (_STAGES, "emit", "write blend configs for Megatron-LM, NeMo, Bridge"),
    "report": (_STAGES, "report", "write the HTML/Markdown report of a run"),
    "run": ("regmix_plugin.commands.run", "run", "run every stage in order into one run directory"),
    "realtext": (
        "regmix_plugin.commands.realtext",
        "realtext",
        "build the real-text corpus from Debian packages",
    ),
    "blend-demo": ("regmix_plugin.commands.blend_demo", "blend_demo", "exact-ratio blend demo"),
}


#: Commands whose console is a log (the sweep worker sends a proxy's output to its train.log).
CHATTY = frozenset({"train-proxy"})


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; subcommand arguments are added only for the chosen subcommand."""
    parser = argparse.ArgumentParser(
        prog="regmix", description="RegMix data-mixture search for Megatron-LM and NeMo."
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log line on the console (libraries' too), at DEBUG level",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, _, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``regmix``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    known, rest = top.parse_known_args(argv)
    if known.command is None:
        top.print_help()
        return 2
    module_name, verb, help_text = COMMANDS[known.command]
    configure_logging(verbose=known.verbose, chatty=known.command in CHATTY)
    try:
        module = importlib.import_module(module_name)
        sub = argparse.ArgumentParser(prog=f"regmix {known.command}", description=help_text)
        getattr(module, f"configure_{verb}")(sub)
        args = sub.parse_args(rest)
        args.verbose = known.verbose
        return int(getattr(module, f"command_{verb}")(args) or 0)
    except RegMixError as exc:
        print(f"regmix {known.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"regmix {known.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
