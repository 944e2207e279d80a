"""The exact-ratio blended dataset inside megatron-core, and the one call that switches it on.

:class:`ExactRatioBlendedDataset` has the contract of megatron-core's ``BlendedDataset``
(constructor ``(datasets, weights, size, config)``, ``len == size``, ``ds[i]`` is
``{"dataset_id": k, **datasets[k][j]}``) and is what megatron-core's own
``BlendedMegatronDatasetBuilder`` constructs once :func:`use_exact_ratio_blending` has run::

    from regmix_plugin.megatron import use_exact_ratio_blending
    use_exact_ratio_blending()          # before the dataset builder runs
    # ... the unchanged Megatron-LM pretrain_gpt.py / NeMo 2 recipe builds its datasets here

Its index caches sit beside Megatron's (``{md5}-ExactRatioBlendedDataset-{split}-*.npy``) and the
hashed description names the algorithm's version, so the two never collide: rank 0 builds and
saves, the other ranks load after the builder's barrier. Above ``lazy_above`` samples (or with
``REGMIX_BLEND_LAZY_ABOVE`` set in the environment) nothing is materialised: each sample's
dataset is computed on demand with memory independent of the number of samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import numbers
import os
import time
from collections import OrderedDict
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import torch
from megatron.core.datasets import blended_megatron_dataset_builder as _builder_module
from megatron.core.datasets.blended_dataset import BlendedDataset

from regmix_plugin.blending import (
    ALGORITHM_VERSION,
    LazyBlendIndex,
    build_blend_indices,
    check_weights,
    counts_after,
    index_dtype,
)
from regmix_plugin.blending.phases import (
    BlendSchedule,
    LazyScheduleIndex,
    build_schedule_indices,
    read_blend_schedule,
    schedule_counts,
)
from regmix_plugin.errors import DataError
from regmix_plugin.indexed import read_index_counts
from regmix_plugin.io import atomic_open

log = logging.getLogger(__name__)

#: Environment variable: blends of more samples than this are looked up lazily.
LAZY_ENV = "REGMIX_BLEND_LAZY_ABOVE"

#: Environment variable: a phase schedule file (:mod:`regmix_plugin.blending.phases`) to serve.
SCHEDULE_ENV = "REGMIX_BLEND_SCHEDULE"

__all__ = [
    "LAZY_ENV",
    "SCHEDULE_ENV",
    "ExactRatioBlendedDataset",
    "ExactRatioBlending",
    "check_prefixes",
    "use_exact_ratio_blending",
]


def _rank() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_rank())
    return 0


def _lazy_above_from_env() -> int | None:
    raw = os.environ.get(LAZY_ENV)
    if raw is None or raw.strip() == "":
        return None
    try:
        number = float(raw)
        value = int(number)
    except (ValueError, OverflowError):
        value, number = -1, float("nan")
    if number != value:
        raise DataError(
            f"{LAZY_ENV}={raw!r} is not a whole number of samples; set it to an integer such as "
            "100000000, or unset it"
        )
    if value < 0:
        raise DataError(f"{LAZY_ENV}={raw!r} must be >= 0 (0 makes every blend lazy)")
    return value


def check_prefixes(prefixes: list[str]) -> list[int]:
    """Check that each Megatron prefix has a readable ``.idx`` and a ``.bin`` that matches it.

    Returns the token count of each prefix (from the ``.idx`` header, no ``.bin`` scan), read by
    the project's one ``.idx`` reader (:func:`regmix_plugin.indexed.read_index_counts`). A missing
    file or a header that does not match its ``.bin`` is a :class:`DataError` naming the file.
    """
    return [read_index_counts(prefix).num_tokens for prefix in prefixes]


class ExactRatioBlendedDataset(BlendedDataset):
    """megatron-core's ``BlendedDataset`` contract with the exact-ratio sequence.

    Sample ``i`` comes from dataset ``k`` such that, at every prefix of the blend, each dataset's
    count is within 1 of ``weight * prefix length``. Datasets may have weight 0 (never sampled);
    any number of datasets (the dataset index is uint8, int16 or int32, the narrowest that holds
    it: :func:`regmix_plugin.blending.index_dtype`). The constructor signature is Megatron's, so
    the builder can construct it.
    """

    #: Blends of more samples than this use lazy lookups (``None``: never, unless the
    #: environment variable ``REGMIX_BLEND_LAZY_ABOVE`` says otherwise).
    lazy_above: int | None = None

    #: A phase schedule file to serve (``None``: none, unless ``REGMIX_BLEND_SCHEDULE`` is set).
    schedule_file: str | None = None

    def __init__(
        self,
        datasets: list[Any],
        weights: list[int] | list[float],
        size: int | None,
        config: Any,
    ) -> None:
        # BlendedDataset.__init__ is not called: its asserts (positive weights, < 32767
        # datasets) are exactly what this class lifts; the attributes it sets are set here.
        torch.utils.data.Dataset.__init__(self)
        if len(datasets) == 0:
            raise DataError("the blend has no datasets: give at least one prefix")
        if len(datasets) != len(weights):
            raise DataError(
                f"the blend has {len(datasets)} datasets but {len(weights)} weights; give one "
                "weight per prefix"
            )
        kinds = {type(d).__name__ for d in datasets}
        if len(kinds) > 1:
            raise DataError(f"a blend needs datasets of one class, got {sorted(kinds)}")
        splits = {d.index_split for d in datasets}
        if len(splits) > 1:
            raise DataError(
                f"a blend needs datasets of one split, got {sorted(s.name for s in splits)}"
            )
        raw = check_weights(list(weights), what="blend weights")
        if size is None:
            # Megatron's exhaustive form: weights are sample counts, drawn exactly.
            if not np.all(raw == np.round(raw)):
                raise DataError(
                    f"without a size the blend weights must be whole sample counts, got {weights}"
                )
            self.num_samples = int(raw.sum())
            self.weights = [int(x) for x in raw]
        else:
            # 0 is what the builder asks of a split that exists but is not sampled
            # (``eval_iters: 0``): an empty blend, as megatron-core's BlendedDataset gives.
            if isinstance(size, bool) or int(size) != size or size < 0:
                raise DataError(f"the blend size must be a whole number >= 0, got {size!r}")
            self.num_samples = int(size)
            self.weights = (raw / raw.sum()).tolist()
        self.datasets = datasets
        self.split = datasets[0].index_split
        self.size = size
        self.config = config
        self.schedule: BlendSchedule | None = self._find_schedule()

        unique_identifiers: OrderedDict[str, Any] = OrderedDict()
        unique_identifiers["class"] = type(self).__name__
        unique_identifiers["algorithm"] = ALGORITHM_VERSION
        unique_identifiers["datasets"] = [d.unique_identifiers for d in datasets]
        unique_identifiers["split"] = self.split.name
        unique_identifiers["weights"] = self.weights
        unique_identifiers["size"] = self.size
        if self.schedule is not None:
            unique_identifiers["schedule"] = self.schedule.to_dict()
        self.unique_identifiers = unique_identifiers
        self.unique_description = json.dumps(
            unique_identifiers, indent=4, default=lambda obj: obj.unique_identifiers
        )
        self.unique_description_hash = hashlib.md5(
            self.unique_description.encode("utf-8"), usedforsecurity=False
        ).hexdigest()

        threshold = type(self).lazy_above
        from_env = _lazy_above_from_env()
        if from_env is not None:
            threshold = from_env
        self.lazy = threshold is not None and self.num_samples > threshold
        self._lazy_index: LazyBlendIndex | LazyScheduleIndex | None = None
        self.dataset_index: np.ndarray | None
        self.dataset_sample_index: np.ndarray | None
        self.dataset_index, self.dataset_sample_index = self._build_indices()
        self.realised_counts = self._counts()
        self._check_capacity()
        if _rank() == 0:
            for line in self.report_lines():
                log.info(line)

    # -- the BlendedDataset contract -------------------------------------------------------
    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, idx: int) -> dict[str, Any]:
        dataset_id, sample_id = self.locate(idx)
        return {"dataset_id": dataset_id, **self.datasets[dataset_id][sample_id]}

    def locate(self, idx: int) -> tuple[int, int]:
        """``(dataset_id, sample within it)`` of blend sample ``idx``."""
        if self._lazy_index is not None:
            return self._lazy_index[idx]
        assert self.dataset_index is not None and self.dataset_sample_index is not None
        return int(self.dataset_index[idx]), int(self.dataset_sample_index[idx])

    # -- building and caching --------------------------------------------------------------
    def _cache_path(self, suffix: str) -> Path:
        name = f"{self.unique_description_hash}-{type(self).__name__}-{self.split.name}-{suffix}"
        return Path(self.config.path_to_cache) / name

    def _build_indices(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Materialise (or load from the cache) the two index arrays; nothing when lazy."""
        if self.num_samples == 0:  # an empty split: nothing to build or cache
            return np.zeros(0, index_dtype(len(self.weights))), np.zeros(0, np.int64)
        if self.lazy:
            self._lazy_index = (
                LazyBlendIndex(self.weights, self.num_samples)
                if self.schedule is None
                else LazyScheduleIndex(
                    self.schedule.schedule,
                    self.num_samples,
                    global_batch_size=self.schedule.global_batch_size,
                )
            )
            return None, None
        cache = getattr(self.config, "path_to_cache", None)
        if cache:
            description = self._cache_path("description.txt")
            index_path = self._cache_path("dataset_index.npy")
            sample_path = self._cache_path("dataset_sample_index.npy")
            hit = bool(getattr(self.config, "fast_cache_load", False)) or all(
                p.is_file() for p in (description, index_path, sample_path)
            )
            if hit:
                return self._load(index_path, sample_path)
            if _rank() != 0:
                raise DataError(
                    f"rank {_rank()} found no exact-ratio index cache {index_path} after rank 0 "
                    "built it: path_to_cache must be a folder every rank sees (a shared file "
                    "system)"
                )
        t0 = time.perf_counter()
        if self.schedule is None:
            dataset_index, dataset_sample_index = build_blend_indices(
                self.weights, self.num_samples
            )
        else:
            dataset_index, dataset_sample_index = build_schedule_indices(
                self.schedule.schedule,
                self.num_samples,
                global_batch_size=self.schedule.global_batch_size,
            )
        log.debug("exact-ratio blend indices built in %.3f s", time.perf_counter() - t0)
        if self.size is None and not np.array_equal(
            np.bincount(dataset_index, minlength=len(self.weights)), np.asarray(self.weights)
        ):
            raise DataError("internal error: the exhaustive blend missed its sample counts")
        if cache:
            with atomic_open(index_path, "wb") as f:
                np.save(f, dataset_index, allow_pickle=False)
            with atomic_open(sample_path, "wb") as f:
                np.save(f, dataset_sample_index, allow_pickle=False)
            with atomic_open(description, "w") as f:  # last: marks the cache complete
                f.write(self.unique_description)
        return dataset_index, dataset_sample_index

    def _load(self, index_path: Path, sample_path: Path) -> tuple[np.ndarray, np.ndarray]:
        arrays = []
        expected = (index_dtype(len(self.weights)), np.dtype(np.int64))
        for path, dtype in zip((index_path, sample_path), expected, strict=True):
            try:
                arr = np.load(path, allow_pickle=False, mmap_mode="r")
            except (OSError, ValueError) as exc:
                raise DataError(
                    f"the exact-ratio index cache {path} cannot be read ({exc}); delete it (and "
                    "its -description.txt) to rebuild"
                ) from None
            if arr.dtype != dtype or arr.shape != (self.num_samples,):
                raise DataError(
                    f"the exact-ratio index cache {path} holds {arr.dtype}{list(arr.shape)}, "
                    f"expected {np.dtype(dtype)}[{self.num_samples}]; delete it to rebuild"
                )
            arrays.append(arr)
        return arrays[0], arrays[1]

    def _counts(self) -> np.ndarray:
        if self.dataset_index is not None:
            return np.bincount(np.asarray(self.dataset_index), minlength=len(self.weights))
        if self.schedule is not None:
            return self.phase_counts().sum(axis=0)
        return counts_after(self.weights, self.num_samples)

    # -- phase schedules ---------------------------------------------------------------------
    def _find_schedule(self) -> BlendSchedule | None:
        """The schedule to serve for this blend (from ``schedule_file`` / the environment)."""
        path = os.environ.get(SCHEDULE_ENV) or type(self).schedule_file
        if not path:
            return None
        blend = read_blend_schedule(path)
        if self.split.name not in blend.splits:
            return None
        if self.size is None:
            raise DataError(
                f"the phase schedule {path} needs a blend with a size (weights, not the "
                "exhaustive form without weights)"
            )
        mine = [os.path.abspath(str(getattr(d, "dataset_path", ""))) for d in self.datasets]
        theirs = [os.path.abspath(p) for p in blend.prefixes]
        if mine != theirs:
            raise DataError(
                f"the phase schedule {path} names the prefixes {list(blend.prefixes)} but the "
                f"{self.split.name} blend has {mine}: give the builder the schedule's prefixes "
                "in its order (BlendSchedule.average_weights gives matching weights)"
            )
        return blend

    def phase_counts(self) -> np.ndarray:
        """Samples per phase and dataset (``phases x datasets``; one row without a schedule)."""
        if self.schedule is None:
            return np.asarray(self.realised_counts, dtype=np.int64)[None, :]
        return schedule_counts(
            self.schedule.schedule,
            self.num_samples,
            global_batch_size=self.schedule.global_batch_size,
        )

    def _check_capacity(self) -> None:
        for k, (dataset, count) in enumerate(zip(self.datasets, self.realised_counts, strict=True)):
            if count > len(dataset):
                surplus = getattr(self.config, "mid_level_dataset_surplus", None)
                raise DataError(
                    f"the {self.split.name} blend asks {type(dataset).__name__} number {k} "
                    f"({getattr(dataset, 'dataset_path', '?')}) for {int(count)} samples but it "
                    f"holds {len(dataset)} and a blended dataset does not repeat them; raise the "
                    f"config's mid_level_dataset_surplus (now {surplus}) or give that prefix "
                    "more data"
                )

    # -- reporting -------------------------------------------------------------------------
    def report(self) -> list[dict[str, Any]]:
        """Per dataset: requested and realised samples and tokens, and epochs consumed.

        ``epochs`` is the share of one pass over the dataset's split of its ``.bin/.idx``
        prefix that the realised samples use (a GPT sample is ``sequence_length`` tokens).
        """
        seq = getattr(self.config, "sequence_length", None)
        total = float(sum(self.weights))
        requested_all = np.asarray(self.weights, dtype=np.float64) / total * self.num_samples
        if self.schedule is not None:
            lengths = self.schedule.schedule.phase_samples(
                self.num_samples, global_batch_size=self.schedule.global_batch_size
            )
            phase_w = np.array([p.weights for p in self.schedule.schedule.phases])
            requested_all = (phase_w / phase_w.sum(axis=1, keepdims=True) * lengths[:, None]).sum(0)
        rows = []
        for k, dataset in enumerate(self.datasets):
            requested = float(requested_all[k])
            realised = int(self.realised_counts[k])
            epochs = None
            per_epoch = getattr(dataset, "_get_num_tokens_per_epoch", None)
            if seq and callable(per_epoch):
                tokens_per_epoch = int(per_epoch())
                if tokens_per_epoch > 0:
                    epochs = realised * seq / tokens_per_epoch
            rows.append(
                {
                    "dataset_id": k,
                    "prefix": str(getattr(dataset, "dataset_path", k)),
                    "requested_samples": requested,
                    "realised_samples": realised,
                    "requested_tokens": requested * seq if seq else None,
                    "realised_tokens": realised * seq if seq else None,
                    "epochs": epochs,
                }
            )
        return rows

    def report_lines(self) -> list[str]:
        """:meth:`report` as log lines."""
        mode = "lazy lookups" if self.lazy else "materialised indices"
        lines = [
            f"ExactRatioBlendedDataset ({ALGORITHM_VERSION}, {self.split.name} split, "
            f"{self.num_samples} samples, {len(self.datasets)} datasets, {mode})"
        ]
        for row in self.report():
            tokens = (
                f", tokens {row['requested_tokens']:.0f} -> {row['realised_tokens']}"
                if row["realised_tokens"] is not None
                else ""
            )
            epochs = f", epochs {row['epochs']:.4f}" if row["epochs"] is not None else ""
            lines.append(
                f"  [{row['dataset_id']}] {row['prefix']}: samples "
                f"{row['requested_samples']:.2f} -> {row['realised_samples']}{tokens}{epochs}"
            )
        return lines


class ExactRatioBlending(contextlib.AbstractContextManager["ExactRatioBlending"]):
    """Handle returned by :func:`use_exact_ratio_blending`; ``undo()`` or leave the ``with``."""

    def __init__(
        self,
        previous: Any,
        patched: bool,
        previous_lazy: int | None,
        previous_schedule: str | None = None,
    ) -> None:
        self._previous = previous
        self._patched = patched
        self._previous_lazy = previous_lazy
        self._previous_schedule = previous_schedule
        self._active = True

    @property
    def active(self) -> bool:
        """Whether this handle still holds the patch it made."""
        return self._active and self._patched

    def undo(self) -> None:
        """Restore what megatron-core's builder used before this call (idempotent)."""
        if self._active and self._patched:
            _builder_module.BlendedDataset = self._previous
            ExactRatioBlendedDataset.lazy_above = self._previous_lazy
            ExactRatioBlendedDataset.schedule_file = self._previous_schedule
        self._active = False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.undo()


def use_exact_ratio_blending(
    *, lazy_above: int | None = None, schedule: str | os.PathLike[str] | None = None
) -> ExactRatioBlending:
    """Make megatron-core's ``BlendedMegatronDatasetBuilder`` build exact-ratio blends.

    Call it once in every rank's process before the builder runs. Without editing the host's
    code: ``torchrun ... -m regmix_plugin.megatron_lm pretrain_gpt.py ARGS`` (Megatron-LM),
    :class:`regmix_plugin.bridge.ExactRatioGPTDatasetProvider` (Megatron-Bridge) and
    :class:`regmix_plugin.nemo2.ExactRatioPreTrainingDataModule` (NeMo 2 with NeMo-Run, whose ranks
    are fresh processes: a call in the launching script does not reach them). Idempotent: a second
    call changes nothing but ``lazy_above`` and its handle's ``undo()`` is a no-op. The handle is
    also a context manager that undoes the patch on exit. ``lazy_above``: blends of more samples
    than this are looked up on demand instead of materialised. ``schedule``: a phase schedule
    file (:func:`regmix_plugin.blending.phases.write_blend_schedule`; or ``REGMIX_BLEND_SCHEDULE``
    in the environment, which reaches every rank) whose phases the blends of its splits serve.
    """
    if lazy_above is not None and (
        isinstance(lazy_above, bool)
        or not isinstance(lazy_above, numbers.Integral)
        or lazy_above < 0
    ):
        raise DataError(
            f"lazy_above must be a whole number of samples >= 0 or None, got {lazy_above!r}"
        )
    previous = _builder_module.BlendedDataset
    previous_lazy = ExactRatioBlendedDataset.lazy_above
    previous_schedule = ExactRatioBlendedDataset.schedule_file
    if schedule is not None:
        read_blend_schedule(schedule)  # a bad file fails here, naming it, not inside the builder
        ExactRatioBlendedDataset.schedule_file = os.fspath(schedule)
    if lazy_above is not None:
        ExactRatioBlendedDataset.lazy_above = int(lazy_above)
    if previous is ExactRatioBlendedDataset:
        return ExactRatioBlending(previous, False, previous_lazy, previous_schedule)
    _builder_module.BlendedDataset = ExactRatioBlendedDataset
    return ExactRatioBlending(previous, True, previous_lazy, previous_schedule)
