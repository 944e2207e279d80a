"""Run an unchanged Megatron-LM training script with exact-ratio blending switched on.

Put ``-m regmix_plugin.megatron_lm`` between the launcher and the script; everything after the
script is the script's own arguments::

    torchrun --nproc-per-node 8 -m regmix_plugin.megatron_lm pretrain_gpt.py \\
        --data-path 0.6 data/web_text_document 0.4 data/code_text_document ...

Every rank's process calls :func:`regmix_plugin.megatron.use_exact_ratio_blending` and then runs
the script as ``__main__`` (``runpy``, with ``sys.argv`` and ``sys.path[0]`` as if Python had
started it), so megatron-core's dataset builder constructs
:class:`~regmix_plugin.megatron.ExactRatioBlendedDataset` without an edit to the script. A module
instead of a script: ``-m regmix_plugin.megatron_lm -m package.module ARGS``. Options of this
entry, before the script: ``--lazy-above N`` (blends of more than N samples are looked up on
demand; see ``REGMIX_BLEND_LAZY_ABOVE``).
"""

from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

from regmix_plugin.errors import ConfigError
from regmix_plugin.megatron import use_exact_ratio_blending

__all__ = ["LaunchTarget", "parse_launch", "run_with_exact_ratios"]

USAGE = "usage: python -m regmix_plugin.megatron_lm [--lazy-above N] (SCRIPT | -m MODULE) [ARGS...]"


@dataclass(kw_only=True, frozen=True)
class LaunchTarget:
    """What :func:`run_with_exact_ratios` runs, parsed from this entry's command line."""

    script: str | None
    """Path of the training script (``pretrain_gpt.py``); None when ``module`` is given."""

    module: str | None
    """Module run with ``-m`` semantics; None when ``script`` is given."""

    args: list[str]
    """The script's own arguments, passed through unchanged."""

    lazy_above: int | None = None
    """``--lazy-above``: blends of more samples than this use lazy lookups; None: the default."""

    def __post_init__(self) -> None:
        if (self.script is None) == (self.module is None):
            raise ConfigError(f"give exactly one script or -m MODULE\n{USAGE}")


def parse_launch(argv: list[str]) -> LaunchTarget:
    """This entry's options, then the script (or ``-m MODULE``) and its arguments verbatim."""
    lazy_above: int | None = None
    i = 0
    while i < len(argv) and argv[i] == "--lazy-above":
        if i + 1 >= len(argv):
            raise ConfigError(f"--lazy-above needs a number of samples\n{USAGE}")
        try:
            lazy_above = int(argv[i + 1])
        except ValueError:
            raise ConfigError(
                f"--lazy-above {argv[i + 1]!r} is not a whole number of samples\n{USAGE}"
            ) from None
        i += 2
    rest = argv[i:]
    if not rest:
        raise ConfigError(f"no training script given\n{USAGE}")
    if rest[0] == "-m":
        if len(rest) < 2:
            raise ConfigError(f"-m needs a module name\n{USAGE}")
        return LaunchTarget(script=None, module=rest[1], args=rest[2:], lazy_above=lazy_above)
    if rest[0].startswith("-"):
        raise ConfigError(f"unknown option {rest[0]!r} before the script\n{USAGE}")
    if not Path(rest[0]).is_file():
        raise ConfigError(f"the training script {rest[0]} does not exist")
    return LaunchTarget(script=rest[0], module=None, args=rest[1:], lazy_above=lazy_above)


def run_with_exact_ratios(target: LaunchTarget) -> None:
    """Switch exact ratios on in this process, then run the target as ``__main__``."""
    use_exact_ratio_blending(lazy_above=target.lazy_above)
    if target.module is not None:
        sys.argv = [target.module, *target.args]
        runpy.run_module(target.module, run_name="__main__", alter_sys=True)
        return
    assert target.script is not None
    script = str(Path(target.script).resolve())
    sys.argv = [target.script, *target.args]
    # As `python script.py` does: the script's folder first on the path (its sibling imports).
    sys.path.insert(0, str(Path(script).parent))
    runpy.run_path(script, run_name="__main__")


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m regmix_plugin.megatron_lm``."""
    try:
        target = parse_launch(list(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        raise SystemExit(f"regmix_plugin.megatron_lm: {exc}") from None
    run_with_exact_ratios(target)


if __name__ == "__main__":
    main()
