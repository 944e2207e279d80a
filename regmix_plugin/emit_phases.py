"""Blend configs for a phase schedule: one set per phase, the Megatron-LM transitions, one schedule.

A schedule of phases (each a share of the run's tokens and its own mixture) reaches each stack
the way that stack takes it today:

- **Megatron-LM** (``--phase-transition-iterations``, Megatron-LM PR 2938): the run checkpoints
  and exits at each transition iteration and is relaunched with the next phase's blend. Each
  launch builds its dataset for its own phase only: ``(next transition - last transition) x
  global batch`` samples, read from its sample 0. :func:`phase_iterations` turns the shares into
  ``--train-iters`` and the transition iterations; each phase folder holds that phase's
  ``data_args.txt`` (and every other format of :func:`regmix_plugin.emit.emit_blends`), and
  ``megatron_lm_phases.txt`` the launch arguments of each phase.
- **NeMo 2 / Megatron-Bridge**: one dataset config per phase (the phase folders'
  ``nemo2_data.py`` / ``bridge_dataset.yaml``), launched phase by phase the same way.
- **Exact-ratio runs** (this plugin inside megatron-core): ``schedule.json``, one file for the
  whole run without a restart, served by :class:`regmix_plugin.megatron.ExactRatioBlendedDataset`
  (``REGMIX_BLEND_SCHEDULE=schedule.json`` or ``use_exact_ratio_blending(schedule=...)``), with
  ``schedule_data_args.txt`` as the run's blend (the schedule's prefixes, run-average weights).
  Its phases end at the same iterations as Megatron-LM's, and a domain's documents continue
  across phases instead of restarting.
"""

from __future__ import annotations

import math
import os
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending import apportion
from regmix_plugin.blending.phases import BlendSchedule, Phase, PhaseSchedule, write_blend_schedule
from regmix_plugin.domains import Catalogue
from regmix_plugin.emit import EmitConfig, EmitResult, emit_blends
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.layout import (
    PHASE_LAUNCH_FILE,
    PHASE_TRANSITIONS_FILE,
    SCHEDULE_DATA_ARGS_FILE,
    SCHEDULE_FILE,
    SCHEDULE_MANIFEST_FILE,
)
from regmix_plugin.schedules import format_schedule, phase_epochs

__all__ = [
    "PhaseIterations",
    "PhaseMixture",
    "ScheduleEmitResult",
    "emit_schedule",
    "phase_iterations",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, kw_only=True)
class PhaseMixture:
    """One phase of a schedule over catalogue domains."""

    name: str
    """Folder-safe label (letters, digits, ``_.-``), unique in the schedule."""
    share: float
    """Share of the run's tokens, in (0, 1]; the shares of a schedule sum to 1."""
    weights: Mapping[str, float]
    """The phase's mixture: every catalogue domain, summing to 1."""

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"phase name {self.name!r} must be letters, digits, '_', '.', '-'")
        if not (math.isfinite(self.share) and 0 < self.share <= 1):
            raise ConfigError(f"phase {self.name!r}: share must lie in (0, 1], got {self.share}")


@dataclass(frozen=True, kw_only=True)
class PhaseIterations:
    """Megatron-LM's view of a schedule: iterations, transitions and samples per phase."""

    train_iters: int
    """``--train-iters``: ``ceil(tokens / (global_batch_size x seq_length))``."""
    transitions: tuple[int, ...]
    """``--phase-transition-iterations`` (one fewer than the phases; increasing)."""
    phase_iters: tuple[int, ...]
    """Iterations of each phase (the shares apportioned over ``train_iters``)."""
    global_batch_size: int
    """Samples per iteration."""
    seq_length: int
    """Tokens per sample."""

    @property
    def phase_samples(self) -> tuple[int, ...]:
        """Samples each phase's launch builds its dataset for."""
        return tuple(i * self.global_batch_size for i in self.phase_iters)

    @property
    def phase_tokens(self) -> tuple[int, ...]:
        """Tokens each phase trains on."""
        return tuple(s * self.seq_length for s in self.phase_samples)

    @property
    def flag(self) -> str:
        """The ``--phase-transition-iterations`` value (comma-separated)."""
        return ",".join(str(t) for t in self.transitions)


def phase_iterations(
    shares: Sequence[float], num_tokens: int, *, global_batch_size: int, seq_length: int
) -> PhaseIterations:
    """Turn token shares into Megatron-LM iterations for a batch size and sequence length.

    ``train_iters`` covers ``num_tokens`` (rounded up to whole iterations); the phases' iterations
    are the largest-remainder apportionment of ``train_iters`` by ``shares``, so they sum to it and
    each is within one iteration of its share. A phase that would get no iteration is an error.
    """
    for what, v in (("global_batch_size", global_batch_size), ("seq_length", seq_length)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(f"{what} must be a whole number > 0, got {v!r}")
    if num_tokens <= 0:
        raise ConfigError(f"num_tokens must be > 0, got {num_tokens}")
    if abs(math.fsum(shares) - 1.0) > 1e-9:
        raise ConfigError(f"phase shares must sum to 1, got {list(shares)}")
    train_iters = math.ceil(num_tokens / (global_batch_size * seq_length))
    iters = apportion(np.asarray(shares, dtype=np.float64), train_iters).astype(int).tolist()
    if min(iters) <= 0:
        raise ConfigError(
            f"a {num_tokens:,}-token run is {train_iters} iterations of {global_batch_size} x "
            f"{seq_length} tokens: too few for phase shares {list(shares)} (a phase gets no "
            "iteration); lower the global batch size or raise the tokens"
        )
    transitions = tuple(int(t) for t in np.cumsum(iters)[:-1])
    return PhaseIterations(
        train_iters=train_iters,
        transitions=transitions,
        phase_iters=tuple(iters),
        global_batch_size=global_batch_size,
        seq_length=seq_length,
    )


@dataclass(frozen=True)
class ScheduleEmitResult:
    """What :func:`emit_schedule` wrote."""

    out_dir: Path
    """The folder."""
    phases: list[EmitResult]
    """Each phase's blend configs (its own folder)."""
    iterations: PhaseIterations
    """Megatron-LM's iterations and transitions."""
    schedule: BlendSchedule
    """The exact-ratio schedule (``schedule.json``)."""
    epochs: dict[str, dict[str, float]]
    """Per domain: epochs per phase and ``total``."""
    warnings: list[str]
    """Domains over their cap over the whole run."""
    files: list[Path]
    """The top-level files written (the manifest last)."""


def _schedule(catalogue: Catalogue, phases: Sequence[PhaseMixture], its: PhaseIterations) -> Any:
    blends = [dict(catalogue.blend(p.weights)) for p in phases]
    order = [pre for d in catalogue.domains for pre in d.prefixes]
    prefixes = [pre for pre in order if any(b.get(pre, 0.0) > 0 for b in blends)]
    domain_of = {pre: d.name for d in catalogue.domains for pre in d.prefixes}
    rows = []
    for i, (p, b) in enumerate(zip(phases, blends, strict=True)):
        end = {"end_iteration": its.transitions[i]} if i < len(phases) - 1 else {}
        rows.append(Phase(weights=tuple(b.get(pre, 0.0) for pre in prefixes), name=p.name, **end))
    return BlendSchedule(
        prefixes=tuple(prefixes),
        schedule=PhaseSchedule(phases=tuple(rows)),
        global_batch_size=its.global_batch_size,
        domains=tuple(domain_of[pre] for pre in prefixes),
    )


def emit_schedule(
    catalogue: Catalogue,
    phases: Sequence[PhaseMixture],
    out_dir: str | os.PathLike[str],
    config: EmitConfig | None = None,
    *,
    global_batch_size: int,
    seq_length: int,
    source: str = "",
) -> ScheduleEmitResult:
    """Write the blend configs of every phase, the Megatron-LM transitions and ``schedule.json``.

    ``phases`` in training order; their shares of ``config.num_tokens`` (default
    ``domains.num_target_tokens``) must sum to 1 and every mixture must be valid for
    :func:`regmix_plugin.emit.emit_blends` (checked for all phases before anything is written).
    """
    config = config or EmitConfig()
    if not phases:
        raise ConfigError("a schedule needs at least one phase")
    names = [p.name for p in phases]
    if len(set(names)) != len(names):
        raise ConfigError(f"phase names must be unique, got {names}")
    num_tokens = config.num_tokens or catalogue.num_target_tokens
    its = phase_iterations(
        [p.share for p in phases],
        num_tokens,
        global_batch_size=global_batch_size,
        seq_length=seq_length,
    )
    for p in phases:  # every mixture checked before any file is written
        if not catalogue.blend(p.weights):
            raise DataError(f"phase {p.name!r} has no non-zero weight; nothing to blend")
    blend = _schedule(catalogue, phases, its)
    out = Path(out_dir)
    results = [
        emit_blends(
            catalogue,
            p.weights,
            out / p.name,
            replace(config, num_tokens=tokens),
            source=f"{source} phase {p.name}".strip(),
        )
        for p, tokens in zip(phases, its.phase_tokens, strict=True)
    ]
    names = [p.name for p in phases]
    mixtures = [p.weights for p in phases]
    epochs = phase_epochs(catalogue, names, mixtures, its.phase_tokens)
    table, warnings = format_schedule(catalogue, names, mixtures, its.phase_tokens)
    train_samples = its.train_iters * global_batch_size
    avg = blend.average_weights(train_samples)
    texts = {
        PHASE_TRANSITIONS_FILE: its.flag + "\n",
        PHASE_LAUNCH_FILE: _launch_lines(phases, its, out),
        SCHEDULE_DATA_ARGS_FILE: "".join(
            f"{w!r} {pre}\n" for pre, w in zip(blend.prefixes, avg, strict=True)
        ),
    }
    files = []
    write_blend_schedule(out / SCHEDULE_FILE, blend)
    files.append(out / SCHEDULE_FILE)
    for fname, text in texts.items():
        atomic_write_text(out / fname, text)
        files.append(out / fname)
    manifest = _manifest(phases, results, its, source)
    manifest.update({"epochs": epochs, "epochs_table": table, "warnings": warnings})
    atomic_write_json(out / SCHEDULE_MANIFEST_FILE, manifest)
    files.append(out / SCHEDULE_MANIFEST_FILE)
    return ScheduleEmitResult(
        out_dir=out,
        phases=results,
        iterations=its,
        schedule=blend,
        epochs=epochs,
        warnings=warnings,
        files=files,
    )


def _launch_lines(phases: Sequence[PhaseMixture], its: PhaseIterations, out: Path) -> str:
    common = (
        f"--train-iters {its.train_iters} --global-batch-size {its.global_batch_size} "
        f"--seq-length {its.seq_length}"
        + (f" --phase-transition-iterations {its.flag}" if its.transitions else "")
    )
    starts = [0, *its.transitions]
    lines = [
        "# Megatron-LM, one launch per phase (same --save/--load): each launch resumes from the",
        "# last checkpoint, trains its phase and exits at the next transition iteration.",
    ]
    for p, start, n in zip(phases, starts, its.phase_iters, strict=True):
        samples = n * its.global_batch_size
        lines.append(f"# phase {p.name}: iterations {start}..{start + n} ({samples:,} samples)")
        lines.append(
            f"{common} --data-args-path {shlex.quote(str(out / p.name / 'data_args.txt'))}"
        )
    return "\n".join(lines) + "\n"


def _manifest(
    phases: Sequence[PhaseMixture], results: Sequence[EmitResult], its: PhaseIterations, source: str
) -> dict[str, Any]:
    """``schedule_manifest.json`` without the epochs: phases, iterations, samples, tokens."""
    rows = zip(phases, results, its.phase_iters, its.phase_samples, its.phase_tokens, strict=True)
    return {
        "source": source,
        "phases": [
            {
                "name": p.name,
                "share": p.share,
                "mixture_id": r.mixture_id,
                "iterations": n,
                "samples": smp,
                "tokens": t,
            }
            for p, r, n, smp, t in rows
        ],
        "train_iters": its.train_iters,
        "phase_transition_iterations": list(its.transitions),
        "global_batch_size": its.global_batch_size,
        "seq_length": its.seq_length,
    }
