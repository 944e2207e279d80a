"""Phase schedules: mixtures that change during training, served by one exact-ratio sequence.

A :class:`PhaseSchedule` cuts a run of ``N`` samples into phases, each with its own weights and
either a share of the run (shares summing to 1, apportioned by largest remainder so that the
phase lengths sum to ``N`` exactly) or an end boundary in samples or iterations (iterations
times the global batch size). Phase ``p`` covers global samples ``[start_p, end_p)`` and is the
exact-ratio sequence of :func:`regmix_plugin.blending.build_blend_indices` for its own weights
and length, so inside each phase every prefix is within one sample of that phase's weights and
the phase's totals are an exact apportionment of its length. A dataset's sample index continues
across phases: dataset ``k``'s samples over the whole run are ``0, 1, 2, ...`` in order (a phase
does not restart a domain at its first document).

This module composes the public blending API (it does not depend on the sampler's internals or
on its dataset-index dtype): :func:`build_schedule_indices` materialises the run and
:class:`LazyScheduleIndex` looks any sample up on demand; both give the same sequence.
:class:`BlendSchedule` adds the dataset prefixes and is the plugin's schedule file
(:func:`read_blend_schedule`, :func:`write_blend_schedule`), which
:mod:`regmix_plugin.megatron` serves inside megatron-core's builder.
"""

from __future__ import annotations

import bisect
import json
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending import (
    LazyBlendIndex,
    apportion,
    build_blend_indices,
    check_weights,
    counts_after,
)
from regmix_plugin.errors import DataError
from regmix_plugin.io import atomic_write_text

#: ``format`` field of a schedule file; bump it when the file's meaning changes.
SCHEDULE_FORMAT = "regmix-phase-schedule-v1"

#: Shares must sum to 1 within this tolerance (nothing is renormalised silently).
SHARE_TOLERANCE = 1e-9

__all__ = [
    "SCHEDULE_FORMAT",
    "BlendSchedule",
    "LazyScheduleIndex",
    "Phase",
    "PhaseSchedule",
    "build_schedule_indices",
    "read_blend_schedule",
    "schedule_counts",
    "write_blend_schedule",
]


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise DataError(f"{what} must be a whole number > 0, got {value!r}")
    return int(value)


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One phase of a schedule: its weights and where it ends."""

    weights: tuple[float, ...]
    """One weight per dataset (normalised; zeros allowed, not all zero)."""
    share: float | None = None
    """Share of the run's samples, in (0, 1]; the shares of a schedule sum to 1."""
    end_sample: int | None = None
    """Global sample index (exclusive) at which the phase ends; the last phase may omit it."""
    end_iteration: int | None = None
    """Training iteration at which the phase ends (``end_iteration * global_batch_size``
    samples); the last phase may omit it."""
    name: str = ""
    """Label for logs and reports (default ``phase<i>``)."""

    def __post_init__(self) -> None:
        w = check_weights(list(self.weights), what=f"phase {self.name or ''} weights".strip())
        object.__setattr__(self, "weights", tuple(float(x) for x in w))
        given = [
            f for f in ("share", "end_sample", "end_iteration") if getattr(self, f) is not None
        ]
        if len(given) > 1:
            raise DataError(f"phase {self.name!r} gives {' and '.join(given)}: give one of them")
        if self.share is not None:
            s = float(self.share)
            if not (math.isfinite(s) and 0 < s <= 1):
                raise DataError(f"phase {self.name!r}: share must lie in (0, 1], got {self.share}")
            object.__setattr__(self, "share", s)
        for f in ("end_sample", "end_iteration"):
            if getattr(self, f) is not None:
                _positive_int(getattr(self, f), f"phase {self.name!r} {f}")


@dataclass(frozen=True, kw_only=True)
class PhaseSchedule:
    """Phases in training order; one phase is a plain blend."""

    phases: tuple[Phase, ...]
    """The phases, all over the same datasets. Either every phase has a ``share`` (summing to 1)
    or every phase but the last has an ``end_sample`` / ``end_iteration`` boundary (increasing;
    the last runs to the end of the run)."""

    def __post_init__(self) -> None:
        phases = tuple(self.phases)
        if not phases:
            raise DataError("a phase schedule needs at least one phase")
        object.__setattr__(self, "phases", phases)
        sizes = {len(p.weights) for p in phases}
        if len(sizes) > 1:
            raise DataError(
                "every phase must give one weight per dataset, got "
                f"{[len(p.weights) for p in phases]}"
            )
        shares = [p.share for p in phases]
        if any(s is not None for s in shares):
            if any(s is None for s in shares):
                raise DataError("phase schedule: give every phase a share, or none of them")
            total = math.fsum(s for s in shares if s is not None)
            if abs(total - 1.0) > SHARE_TOLERANCE:
                raise DataError(f"phase shares must sum to 1, got {total!r} ({shares})")
        else:
            for p in phases[:-1]:
                if p.end_sample is None and p.end_iteration is None:
                    raise DataError(
                        f"phase {p.name!r} has no share, end_sample or end_iteration: every phase "
                        "but the last needs one"
                    )

    @property
    def num_datasets(self) -> int:
        """Datasets the schedule blends."""
        return len(self.phases[0].weights)

    @property
    def names(self) -> tuple[str, ...]:
        """Phase labels (``phase<i>`` where none was given)."""
        return tuple(p.name or f"phase{i}" for i, p in enumerate(self.phases))

    def phase_samples(
        self, num_samples: int, *, global_batch_size: int | None = None
    ) -> np.ndarray:
        """Samples in each phase of a run of ``num_samples`` (int64, summing to it)."""
        n = _positive_int(num_samples, "num_samples")
        if self.phases[0].share is not None:
            shares = np.array([p.share for p in self.phases], dtype=np.float64)
            return apportion(shares, n).astype(np.int64)
        ends = [self._end_sample(p, global_batch_size) for p in self.phases[:-1]]
        last = self.phases[-1]
        if last.end_sample is not None or last.end_iteration is not None:
            end = self._end_sample(last, global_batch_size)
            if end != n:
                raise DataError(
                    f"the last phase ({self.names[-1]}) ends at sample {end} but the run has "
                    f"{n} samples; leave its boundary out or make it the run's end"
                )
        bounds = np.array([0, *ends, n], dtype=np.int64)
        if np.any(np.diff(bounds) <= 0):
            raise DataError(
                f"phase boundaries {ends} (samples) must increase and lie inside the run's "
                f"{n} samples"
            )
        return np.diff(bounds)

    def _end_sample(self, phase: Phase, global_batch_size: int | None) -> int:
        if phase.end_iteration is None:
            assert phase.end_sample is not None
            return phase.end_sample
        if global_batch_size is None:
            raise DataError(
                f"phase {phase.name!r} ends at iteration {phase.end_iteration}: give the global "
                "batch size (global_batch_size) to turn iterations into samples"
            )
        return phase.end_iteration * _positive_int(global_batch_size, "global_batch_size")

    def describe(self) -> list[dict[str, Any]]:
        """JSON-ready phases (for schedule files and cache descriptions)."""
        rows = []
        for name, p in zip(self.names, self.phases, strict=True):
            row: dict[str, Any] = {"name": name, "weights": list(p.weights)}
            for f in ("share", "end_sample", "end_iteration"):
                if getattr(p, f) is not None:
                    row[f] = getattr(p, f)
            rows.append(row)
        return rows

    @classmethod
    def from_rows(cls, rows: Sequence[Any], *, what: str = "phases") -> PhaseSchedule:
        """The schedule of :meth:`describe`'s rows (mappings), with errors that name ``what``."""
        if not isinstance(rows, Sequence) or isinstance(rows, str) or not rows:
            raise DataError(f"{what} must be a non-empty list of phases, got {rows!r:.200}")
        phases = []
        known = {"name", "weights", "share", "end_sample", "end_iteration"}
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or "weights" not in row:
                raise DataError(f"{what}[{i}] must be a mapping with 'weights', got {row!r:.200}")
            unknown = sorted(set(row) - known)
            if unknown:
                raise DataError(f"{what}[{i}] has unknown keys {unknown}; allowed: {sorted(known)}")
            try:
                phases.append(Phase(**{**row, "weights": tuple(row["weights"])}))
            except DataError as exc:
                raise DataError(f"{what}[{i}]: {exc}") from None
        try:
            return cls(phases=tuple(phases))
        except DataError as exc:
            raise DataError(f"{what}: {exc}") from None


def _starts(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def schedule_counts(
    schedule: PhaseSchedule, num_samples: int, *, global_batch_size: int | None = None
) -> np.ndarray:
    """Per-phase, per-dataset sample counts (int64, ``phases x datasets``), not materialised.

    Row ``p`` is the final counts of phase ``p``'s exact-ratio sequence (an exact apportionment
    of its length); empty phases (possible with shares of a tiny run) are rows of zeros.
    """
    lengths = schedule.phase_samples(num_samples, global_batch_size=global_batch_size)
    out = np.zeros((len(lengths), schedule.num_datasets), dtype=np.int64)
    for p, (phase, n) in enumerate(zip(schedule.phases, lengths.tolist(), strict=True)):
        if n > 0:
            out[p] = counts_after(phase.weights, n)
    return out


def build_schedule_indices(
    schedule: PhaseSchedule,
    num_samples: int,
    *,
    global_batch_size: int | None = None,
    num_threads: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """The whole run materialised: ``(dataset_index, dataset_sample_index int64)``.

    The dataset index has the dtype :func:`regmix_plugin.blending.build_blend_indices` gives for
    this number of datasets. Phase ``p`` fills ``[start_p, end_p)`` with its own blend; each
    dataset's sample index is offset by the samples it gave the earlier phases.
    """
    lengths = schedule.phase_samples(num_samples, global_batch_size=global_batch_size)
    starts = _starts(lengths)
    offsets = np.zeros(schedule.num_datasets, dtype=np.int64)
    dataset_index: np.ndarray | None = None
    dataset_sample_index = np.empty(int(starts[-1]), dtype=np.int64)
    for p, phase in enumerate(schedule.phases):
        n = int(lengths[p])
        if n == 0:
            continue
        index, sample = build_blend_indices(phase.weights, n, num_threads=num_threads)
        if dataset_index is None:
            dataset_index = np.empty(int(starts[-1]), dtype=index.dtype)
        lo, hi = int(starts[p]), int(starts[p + 1])
        dataset_index[lo:hi] = index
        np.add(sample, offsets[index], out=dataset_sample_index[lo:hi])
        offsets += np.bincount(index, minlength=schedule.num_datasets).astype(np.int64)
        del index, sample
    assert dataset_index is not None  # num_samples > 0, so some phase is not empty
    return dataset_index, dataset_sample_index


class LazyScheduleIndex:
    """The sequence of :func:`build_schedule_indices`, element by element, on demand.

    Memory is O(phases x datasets). A lookup finds its phase by bisection and asks that phase's
    :class:`regmix_plugin.blending.LazyBlendIndex`, then adds the dataset's samples in earlier
    phases (from :func:`schedule_counts`). The lazy limits of ``LazyBlendIndex`` apply per phase.
    """

    def __init__(
        self, schedule: PhaseSchedule, num_samples: int, *, global_batch_size: int | None = None
    ) -> None:
        self.schedule = schedule
        self.num_samples = _positive_int(num_samples, "num_samples")
        self.global_batch_size = global_batch_size
        lengths = schedule.phase_samples(self.num_samples, global_batch_size=global_batch_size)
        self.starts = _starts(lengths)
        counts = schedule_counts(schedule, self.num_samples, global_batch_size=global_batch_size)
        self.counts = counts
        self.offsets = np.concatenate(
            [np.zeros((1, schedule.num_datasets), dtype=np.int64), np.cumsum(counts, axis=0)]
        )[:-1]
        self._phases = [
            LazyBlendIndex(phase.weights, int(n)) if n > 0 else None
            for phase, n in zip(schedule.phases, lengths.tolist(), strict=True)
        ]

    def __len__(self) -> int:
        return self.num_samples

    def phase_of(self, index: int) -> int:
        """The phase that global sample ``index`` (0 <= index < len) falls in."""
        return bisect.bisect_right(self.starts.tolist(), index) - 1

    def __getitem__(self, index: int) -> tuple[int, int]:
        """``(dataset, sample within that dataset)`` of global sample ``index``."""
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"schedule indices must be integers, got {index!r}")
        i = int(index)
        if i < 0:
            i += self.num_samples
        if not 0 <= i < self.num_samples:
            raise IndexError(f"schedule index {index} out of range for {self.num_samples} samples")
        p = self.phase_of(i)
        lazy = self._phases[p]
        assert lazy is not None  # an empty phase holds no index
        k, j = lazy[i - int(self.starts[p])]
        return k, j + int(self.offsets[p, k])

    def lookup(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised :meth:`__getitem__`: ``(dataset int[], sample int64[])``."""
        idx = np.asarray(indices)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"schedule indices must be integers, got {idx.dtype} values")
        idx = idx.astype(np.int64).ravel()
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_samples):
            raise IndexError(f"schedule indices must lie in [0, {self.num_samples})")
        phase = np.searchsorted(self.starts, idx, side="right") - 1
        dataset = np.empty(idx.size, dtype=np.int64)
        sample = np.empty(idx.size, dtype=np.int64)
        for p in np.unique(phase).tolist():
            sel = phase == p
            lazy = self._phases[p]
            assert lazy is not None
            k, j = lazy.lookup(idx[sel] - self.starts[p])
            dataset[sel] = k
            sample[sel] = j + self.offsets[p][k]
        return dataset, sample

    def __getstate__(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "num_samples": self.num_samples,
            "global_batch_size": self.global_batch_size,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["schedule"], state["num_samples"], global_batch_size=state["global_batch_size"]
        )


@dataclass(frozen=True, kw_only=True)
class BlendSchedule:
    """A schedule over named dataset prefixes: the plugin's schedule file."""

    prefixes: tuple[str, ...]
    """Megatron dataset prefixes (no ``.bin``/``.idx``), one per weight of every phase."""
    schedule: PhaseSchedule
    """The phases."""
    splits: tuple[str, ...] = ("train",)
    """Splits the schedule applies to (``train``, ``valid``, ``test``); a blend of another split
    keeps the builder's plain weights."""
    global_batch_size: int | None = None
    """Samples per iteration, needed when a phase ends at an ``end_iteration``."""
    domains: tuple[str, ...] = field(default=())
    """Optional domain name of each prefix (for reports)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(str(p) for p in self.prefixes))
        object.__setattr__(self, "splits", tuple(self.splits))
        object.__setattr__(self, "domains", tuple(self.domains))
        if len(self.prefixes) != self.schedule.num_datasets:
            raise DataError(
                f"the schedule names {len(self.prefixes)} prefixes but its phases give "
                f"{self.schedule.num_datasets} weights each"
            )
        bad = sorted(set(self.splits) - {"train", "valid", "test"})
        if bad or not self.splits:
            raise DataError(f"schedule splits must be among train/valid/test, got {self.splits}")
        if self.global_batch_size is not None:
            _positive_int(self.global_batch_size, "global_batch_size")
        if self.domains and len(self.domains) != len(self.prefixes):
            raise DataError("schedule domains must name every prefix (or be left out)")

    def average_weights(self, num_samples: int) -> list[float]:
        """Run-average weight of each prefix over ``num_samples`` (the builder's blend)."""
        counts = schedule_counts(
            self.schedule, num_samples, global_batch_size=self.global_batch_size
        ).sum(axis=0)
        return (counts / counts.sum()).tolist()

    def to_dict(self) -> dict[str, Any]:
        """The schedule file's content."""
        out: dict[str, Any] = {
            "format": SCHEDULE_FORMAT,
            "prefixes": list(self.prefixes),
            "splits": list(self.splits),
            "phases": self.schedule.describe(),
        }
        if self.global_batch_size is not None:
            out["global_batch_size"] = self.global_batch_size
        if self.domains:
            out["domains"] = list(self.domains)
        return out


def write_blend_schedule(path: str | os.PathLike[str], blend: BlendSchedule) -> Path:
    """Write ``blend`` as a schedule file (JSON, atomically); returns the path."""
    target = Path(path)
    atomic_write_text(target, json.dumps(blend.to_dict(), indent=2) + "\n")
    return target


def read_blend_schedule(path: str | os.PathLike[str]) -> BlendSchedule:
    """Read a schedule file; every problem is a :class:`DataError` naming the file."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"the schedule file {source} cannot be read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != SCHEDULE_FORMAT:
        raise DataError(f'{source} is not a schedule file (need "format": "{SCHEDULE_FORMAT}")')
    known = {"format", "prefixes", "splits", "phases", "global_batch_size", "domains"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"{source}: unknown keys {unknown}; allowed: {sorted(known)}")
    try:
        return BlendSchedule(
            prefixes=tuple(data.get("prefixes") or ()),
            schedule=PhaseSchedule.from_rows(data.get("phases") or [], what="phases"),
            splits=tuple(data.get("splits", ("train",))),
            global_batch_size=data.get("global_batch_size"),
            domains=tuple(data.get("domains") or ()),
        )
    except DataError as exc:
        raise DataError(f"{source}: {exc}") from None
