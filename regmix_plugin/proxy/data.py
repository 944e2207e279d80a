"""Training blend and held-out evaluation sets, from real Megatron ``.bin/.idx`` prefixes.

Every prefix is split by documents with the config's split string, exactly as Megatron splits it
(``proxy.split``, e.g. ``"98,2,0"``): the training part feeds the mixture's blend, the validation
part of a domain's prefixes is that domain's held-out set. Target sets (``proxy.targets``) are
evaluated whole. Everything is checked before megatron-core builds anything, so bad data fails
with an error that names the domain, the numbers and the setting to change.

The training blend is built by megatron-core's ``BlendedMegatronDatasetBuilder``; with
``regmix_plugin.megatron.use_exact_ratio_blending`` it constructs the plugin's exact-ratio class,
whose samples carry the ``dataset_id`` that the trainer counts to report realised tokens.

Index caches: megatron-core writes its ``.npy`` caches in place (not atomically), and every rank
and every proxy would build the same evaluation indices. Each build therefore runs inside
:func:`cache_guard`, which holds the cache folder's file lock (one builder at a time; the others
then load what it wrote, no collective barrier and its timeout involved), removes the files a
killed build left half-written (any file not recorded, with its size, by a finished build), and
records the folder's files when the build finishes. The evaluation caches live in one folder
per study (:func:`eval_cache_dir`), shared by every proxy.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending.apportionment import apportion
from regmix_plugin.blending.phases import BlendSchedule, write_blend_schedule
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import DataError
from regmix_plugin.indexed import read_index_counts, read_sequence_lengths
from regmix_plugin.io import atomic_write_json
from regmix_plugin.layout import SCHEDULE_FILE
from regmix_plugin.proxy.config import ProxyConfig, parse_split

log = logging.getLogger(__name__)

#: Split matrix rows of Megatron's ``Split`` enum: train, valid, test.
_TRAIN, _VALID = 0, 1

#: In a cache folder: the lock every builder holds, and the files (with sizes) of finished builds.
CACHE_LOCK = ".lock"
CACHE_MANIFEST = ".complete.json"


def _read_manifest(folder: Path) -> dict[str, int]:
    try:
        data = json.loads((folder / CACHE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name not in (CACHE_LOCK, CACHE_MANIFEST)]


@contextlib.contextmanager
def cache_guard(folder: Path) -> Iterator[None]:
    """Build megatron-core index caches in ``folder`` safely across processes and kills.

    Holds ``folder/.lock`` (``flock``, released even when the holder is killed) for the body;
    first deletes every file a finished build did not record (a kill mid-write leaves a
    truncated ``.npy`` that megatron-core would otherwise load and trip on, on every retry);
    after a body that did not raise, records every file of the folder with its size.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / CACHE_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP):
                raise
            # A file system without flock (Lustre mounted without -o flock): build unguarded,
            # as megatron-core alone would; concurrent builders may then race.
            log.warning(
                "%s: no file locks here (%s); building the index caches unlocked", folder, exc
            )
        complete = _read_manifest(folder)
        for path in _cache_files(folder):
            if not path.is_file() or complete.get(path.name) == path.stat().st_size:
                continue  # folders are other caches' (their own guard looks after them)
            log.warning("%s: removing %s, left unfinished by an interrupted build", folder, path)
            path.unlink(missing_ok=True)
        yield
        files = {p.name: p.stat().st_size for p in _cache_files(folder) if p.is_file()}
        atomic_write_json(folder / CACHE_MANIFEST, dict(sorted(files.items())))
    finally:
        os.close(fd)


class _Vocabulary:
    """The little of a tokenizer that megatron-core's GPT dataset reads: size and identity.

    Proxies read pre-tokenised data, so no text is ever encoded. With no ``pad`` attribute the
    dataset uses its own out-of-vocabulary pad id; no end-of-document handling is switched on.
    """

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": "regmix_plugin.proxy.data._Vocabulary", "vocab_size": self.vocab_size}


@dataclass(frozen=True)
class PrefixSplit:
    """How Megatron's split string divides one prefix (document ranges and their tokens)."""

    prefix: str
    num_documents: int
    train_documents: tuple[int, int]
    """``[begin, end)`` of the training documents."""
    valid_documents: tuple[int, int]
    """``[begin, end)`` of the validation documents."""
    train_tokens: int
    valid_tokens: int


def split_prefix(prefix: str, split: str) -> PrefixSplit:
    """Apply ``split`` to ``prefix`` the way megatron-core does (rounded document fractions)."""
    # The one .idx reader: a clear DataError for missing, truncated or mismatched files.
    lengths = read_sequence_lengths(prefix)
    n = int(lengths.shape[0])
    shares = parse_split(split)
    bounds = np.cumsum([0.0, *shares])
    edges = [round(float(b) * n) for b in bounds]
    cum = np.concatenate([[0], np.cumsum(lengths)])
    return PrefixSplit(
        prefix=prefix,
        num_documents=n,
        train_documents=(edges[0], edges[1]),
        valid_documents=(edges[1], edges[2]),
        train_tokens=int(cum[edges[1]] - cum[edges[0]]),
        valid_tokens=int(cum[edges[2]] - cum[edges[1]]),
    )


def _gpt_config(
    cfg: ProxyConfig, *, blend: Any, seed: int, split_row: int, whole: bool, cache: Path
) -> Any:
    """A ``GPTDatasetConfig`` that builds only the split ``split_row`` (0 train, 1 validation).

    ``whole`` makes that split cover all documents of each prefix (target sets).
    """
    from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

    config = GPTDatasetConfig(
        random_seed=seed,
        sequence_length=cfg.seq_length,
        blend=blend,
        split=cfg.split,
        path_to_cache=str(cache),
        tokenizer=_Vocabulary(cfg.vocab_size),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
    )
    # Build only the split we need: the others stay None and megatron-core skips them.
    matrix: list[tuple[float, float] | None] = [None, None, None]
    matrix[split_row] = (0.0, 1.0) if whole else config.split_matrix[split_row]
    config.split_matrix = matrix
    return config


@dataclass
class TrainData:
    """The training blend: a dataset of ``num_samples`` samples and who each prefix belongs to."""

    dataset: Any
    """Indexable; ``dataset[i]`` has ``tokens``, ``labels``, ``loss_mask``, ``dataset_id``."""
    prefixes: list[str]
    """Prefix of each ``dataset_id``."""
    prefix_domains: list[str]
    """Domain of each ``dataset_id``."""
    weights: list[float]
    """Blend weight of each prefix."""
    num_samples: int


def _domain_of(catalogue: Catalogue) -> dict[str, str]:
    return {p: d.name for d in catalogue.domains for p in d.prefixes}


def check_training_data(
    cfg: ProxyConfig, catalogue: Catalogue, blend: Sequence[tuple[str, float]]
) -> list[PrefixSplit]:
    """Fail early, and clearly, on a blend whose training parts cannot fill a sample."""
    owner = _domain_of(catalogue)
    splits = []
    for prefix, _ in blend:
        s = split_prefix(prefix, cfg.split)
        if s.train_tokens < cfg.seq_length + 1:
            raise DataError(
                f"domain {owner[prefix]!r}: the training part of {prefix} holds {s.train_tokens} "
                f"tokens ({s.train_documents[1] - s.train_documents[0]} of {s.num_documents} "
                f"documents under proxy.split {cfg.split!r}), fewer than one sample of "
                f"proxy.seq_length + 1 = {cfg.seq_length + 1}; lower proxy.seq_length, raise the "
                "training share of proxy.split, or give the domain more data"
            )
        splits.append(s)
    return splits


def build_train_data(
    cfg: ProxyConfig,
    catalogue: Catalogue,
    blend: Sequence[tuple[str, float]],
    cache: Path,
    *,
    schedule: BlendSchedule | None = None,
) -> TrainData:
    """The exact-ratio blend of the training parts, ``num_steps * global_batch_size`` samples.

    With ``schedule`` (a phase schedule over ``blend``'s prefixes, from
    :func:`regmix_plugin.schedules.proxy_schedule`) the blend serves its phases in order.
    """
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset

    from regmix_plugin.megatron import use_exact_ratio_blending

    check_training_data(cfg, catalogue, blend)
    prefixes = [p for p, _ in blend]
    weights = [w for _, w in blend]
    num_samples = cfg.num_steps * cfg.global_batch_size
    config = _gpt_config(
        cfg, blend=(prefixes, weights), seed=cfg.seed, split_row=_TRAIN, whole=False, cache=cache
    )
    builder = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], lambda: True, config)
    schedule_path = None
    if schedule is not None:
        schedule_path = write_blend_schedule(Path(cache) / SCHEDULE_FILE, schedule)
    with use_exact_ratio_blending(schedule=schedule_path):
        dataset = builder.build()[_TRAIN]
    if dataset is None or len(dataset) < num_samples:
        raise DataError(
            f"megatron-core built {0 if dataset is None else len(dataset)} training samples, "
            f"{num_samples} are needed"
        )
    owner = _domain_of(catalogue)
    return TrainData(
        dataset=dataset,
        prefixes=prefixes,
        prefix_domains=[owner[p] for p in prefixes],
        weights=weights,
        num_samples=num_samples,
    )


@dataclass
class EvalSet:
    """A held-out set: the first ``counts[k]`` samples of each part ``parts[k]``."""

    key: str
    """Metric name, ``val_loss/<domain>`` or ``target_loss/<name>``."""
    parts: list[Any]
    counts: list[int]

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def sample_refs(self) -> list[tuple[int, int]]:
        """``(part, index)`` of every sample, in a fixed order."""
        return [(k, i) for k, n in enumerate(self.counts) for i in range(n)]


def _allocate(num: int, sizes: Sequence[int]) -> list[int]:
    """Split ``num`` samples over parts in proportion to ``sizes`` (largest remainder, ties to
    the lower index: :func:`regmix_plugin.blending.apportion`), each part at most its size."""
    counts = apportion(np.asarray(sizes, dtype=np.float64), num)
    return [min(int(c), s) for c, s in zip(counts, sizes, strict=True)]


def _build_eval_set(
    cfg: ProxyConfig, key: str, prefixes: Sequence[str], *, whole: bool, cache: Path, what: str
) -> EvalSet:
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset

    num = cfg.num_eval_tokens // cfg.seq_length
    parts: list[Any] = []
    for prefix in prefixes:
        config = _gpt_config(
            cfg,
            blend=([prefix], None),
            seed=cfg.eval_seed,
            split_row=_VALID,
            whole=whole,
            cache=cache,
        )
        builder = BlendedMegatronDatasetBuilder(
            GPTDataset, [None, None, None], lambda: True, config
        )
        parts.append(builder.build()[_VALID])
    sizes = [len(p) for p in parts]
    if sum(sizes) < num:
        raise DataError(
            f"{what} has {sum(sizes)} held-out samples of {cfg.seq_length} tokens, but "
            f"proxy.num_eval_tokens = {cfg.num_eval_tokens} needs {num}; lower "
            "proxy.num_eval_tokens"
            + ("" if whole else ", raise the validation share of proxy.split")
            + " or give it more data"
        )
    return EvalSet(key=key, parts=parts, counts=_allocate(num, sizes))


def build_eval_sets(cfg: ProxyConfig, catalogue: Catalogue, cache: Path) -> list[EvalSet]:
    """One validation set per domain (its prefixes' validation parts) and one per target."""
    sets = []
    for domain in catalogue.domains:
        if domain.is_planning:
            raise DataError(
                f"domain {domain.name!r} has no prefixes (num_tokens given for planning), so it "
                "has no validation split; list its Megatron prefixes in domains.entries"
            )
        usable = []
        for prefix in domain.prefixes:
            s = split_prefix(prefix, cfg.split)
            if s.valid_tokens > cfg.seq_length:
                usable.append(prefix)
        if not usable:
            raise DataError(
                f"domain {domain.name!r} has no validation split: proxy.split {cfg.split!r} "
                f"leaves none of its {domain.num_documents} documents in {len(domain.prefixes)} "
                f"prefix(es) a validation part of more than proxy.seq_length = {cfg.seq_length} "
                "tokens; raise the validation share of proxy.split or give the domain more data"
            )
        sets.append(
            _build_eval_set(
                cfg,
                f"val_loss/{domain.name}",
                usable,
                whole=False,
                cache=cache,
                what=f"domain {domain.name!r} (validation part under proxy.split {cfg.split!r})",
            )
        )
    for name, patterns in cfg.targets.items():
        prefixes = list(patterns)  # absolute: the study resolved them
        for pattern, prefix in zip(patterns, prefixes, strict=True):
            try:
                read_index_counts(prefix)
            except DataError as exc:
                raise DataError(
                    f"proxy.targets.{name}: prefix {pattern!r}: {exc} (relative paths are "
                    "relative to the config file)"
                ) from None
        sets.append(
            _build_eval_set(
                cfg,
                f"target_loss/{name}",
                prefixes,
                whole=True,
                cache=cache,
                what=f"target set {name!r}",
            )
        )
    return sets


def _num_samples(tokens: int, seq_length: int) -> int:
    """Samples megatron-core's ``GPTDataset`` makes of one epoch of ``tokens`` tokens (one extra
    token per sample, the last partial sample dropped: its ``__len__``)."""
    return max(0, (tokens - 1) // seq_length)


def check_eval_data(cfg: ProxyConfig, catalogue: Catalogue) -> None:
    """Before any proxy launches: every domain's validation part and every target set hold the
    ``proxy.num_eval_tokens`` each proxy evaluates on (from the ``.idx`` files alone; the same
    count :func:`build_eval_sets` finds after launch). Raises :class:`DataError` naming the
    setting to change."""
    need = cfg.num_eval_tokens // cfg.seq_length
    for domain in catalogue.domains:
        if domain.is_planning:
            continue  # build_eval_sets names it; no data to count
        have = 0
        for prefix in domain.prefixes:
            s = split_prefix(prefix, cfg.split)
            if s.valid_tokens > cfg.seq_length:
                have += _num_samples(s.valid_tokens, cfg.seq_length)
        if have == 0:
            raise DataError(
                f"domain {domain.name!r} has no validation split: proxy.split {cfg.split!r} "
                f"leaves none of its {domain.num_documents} documents in {len(domain.prefixes)} "
                f"prefix(es) a validation part of more than proxy.seq_length = {cfg.seq_length} "
                "tokens; raise the validation share of proxy.split or give the domain more data"
            )
        if have < need:
            raise DataError(
                f"domain {domain.name!r}: the validation part under proxy.split {cfg.split!r} "
                f"holds {have} samples of proxy.seq_length = {cfg.seq_length} tokens, but "
                f"proxy.num_eval_tokens = {cfg.num_eval_tokens} needs {need}; lower "
                "proxy.num_eval_tokens, raise the validation share of proxy.split or give the "
                "domain more data (checked before any proxy launches)"
            )
    for name, prefixes in cfg.targets.items():
        have = 0
        for prefix in prefixes:
            try:
                counts = read_index_counts(prefix)
            except DataError as exc:
                raise DataError(f"proxy.targets.{name}: {exc}") from None
            have += _num_samples(counts.num_tokens, cfg.seq_length)
        if have < need:
            raise DataError(
                f"proxy.targets.{name}: the target set holds {have} samples of "
                f"proxy.seq_length = {cfg.seq_length} tokens, but proxy.num_eval_tokens = "
                f"{cfg.num_eval_tokens} needs {need}; lower proxy.num_eval_tokens or give the "
                "target set more data (checked before any proxy launches)"
            )
