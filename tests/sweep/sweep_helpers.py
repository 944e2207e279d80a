"""Helpers of the sweep tests: the study writer and the stand-in proxy's command template.

A module of its own (not ``conftest``) so that test modules can import it by a unique name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from regmix_plugin import stages
from regmix_plugin.mixtures import mixture_id
from regmix_plugin.study import load_study

HERE = Path(__file__).resolve().parent
FAKE_PROXY = HERE / "fake_proxy.py"
REPO = HERE.parents[1]
VOCAB = 96
DOMAINS = ("a", "b", "c")

#: Tiny real proxy: 10 steps of 16 x 32 tokens, about 10 s per proxy on the 2-core CI machine.
TINY_PROXY: dict[str, Any] = {
    "preset": "tiny",
    "vocab_size": VOCAB,
    "seq_length": 32,
    "num_tokens": 32 * 16 * 10,
    "micro_batch_size": 8,
    "global_batch_size": 16,
    "lr": 3e-3,
    "split": "80,20,0",
    "num_eval_tokens": 512,
    "log_interval": 5,
    "num_threads": 1,
}

WEIGHTS = [
    {"a": 0.6, "b": 0.3, "c": 0.1},
    {"a": 0.2, "b": 0.3, "c": 0.5},
    {"a": 0.0, "b": 0.5, "c": 0.5},
    {"a": 0.25, "b": 0.25, "c": 0.5},
    {"a": 1.0, "b": 0.0, "c": 0.0},
    {"a": 0.1, "b": 0.8, "c": 0.1},
]


def fake_command(*, steps: int = 4, step_s: float = 0.1, fail_times: int = 0) -> str:
    """The ``sweep.command`` template of the stand-in proxy."""
    return (
        f"{{python}} {FAKE_PROXY} --mixture {{mixture_id}} --out {{run_dir}} "
        f"--steps {steps} --step-s {step_s} --fail-times {fail_times} --domains a,b,c"
    )


class SweepFixture:
    """A study on disk: its config path, run_dir, the mixture ids; rewrite with ``write``."""

    def __init__(self, root: Path, prefixes: dict[str, str]) -> None:
        self.root = root
        self.prefixes = prefixes
        self.config = root / "study.yaml"
        self.run_dir = root / "run"
        self.sweep_dir = self.run_dir / "sweep"
        self.ids: list[str] = []

    def write(
        self,
        sweep: dict[str, Any],
        *,
        num_mixtures: int = 3,
        proxy: dict[str, Any] | None = None,
        columns: tuple[str, ...] = DOMAINS,
    ) -> SweepFixture:
        study = {
            "run_dir": "run",
            "domains": {
                "num_target_tokens": 10**6,
                "entries": [{"name": n, "prefixes": [p]} for n, p in self.prefixes.items()],
            },
            "proxy": dict(TINY_PROXY if proxy is None else proxy),
            "sweep": sweep,
        }
        self.config.write_text(yaml.safe_dump(study, sort_keys=False))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        rows = WEIGHTS[:num_mixtures]
        self.ids = [mixture_id(w) for w in rows]
        lines = ["mixture_id," + ",".join(columns)]
        for mid, w in zip(self.ids, rows, strict=True):
            lines.append(mid + "," + ",".join(repr(w.get(c, 0.0)) for c in columns))
        (self.run_dir / "mixtures.csv").write_text("\n".join(lines) + "\n")
        return self

    def starts(self, mid: str) -> int:
        """How often the proxy of ``mid`` started training (stand-in or real)."""
        folder = self.sweep_dir / "runs" / mid
        fake = folder / "starts.log"
        if fake.is_file():
            return len(fake.read_text().split())
        log = folder / "train.log"
        return log.read_text().count("==== regmix attempt") if log.is_file() else 0


def run_sweep(config: Path, *, force_mix: bool = False) -> Any:
    """The sweep stage of a study file, as ``regmix sweep CONFIG`` runs it."""
    study = load_study(config)
    return stages.sweep(study, study.layout, stages.build_catalogue(study), force_mix=force_mix)


def plan_sweep(config: Path) -> Any:
    """The sweep's plan for a study file, as ``regmix sweep CONFIG --dry-run`` makes it."""
    study = load_study(config)
    return stages.plan_sweep(study, study.layout, stages.build_catalogue(study))
