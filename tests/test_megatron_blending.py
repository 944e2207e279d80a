"""The exact-ratio dataset class inside real megatron-core: builder, GPTDataset, caches."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from megatron.core.datasets import blended_megatron_dataset_builder as builder_module
from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from regmix_plugin.blend_demo import DemoTokenizer, format_table, run_blend_demo
from regmix_plugin.blending import ALGORITHM_VERSION, build_blend_indices
from regmix_plugin.errors import DataError
from regmix_plugin.megatron import (
    LAZY_ENV,
    ExactRatioBlendedDataset,
    check_prefixes,
    use_exact_ratio_blending,
)

VOCAB = 128
SEQ = 16


def _config(prefixes: list[str], weights: list[float], cache: Path | None) -> GPTDatasetConfig:
    return GPTDatasetConfig(
        random_seed=1,
        sequence_length=SEQ,
        blend=(prefixes, weights),
        split="100,0,0",
        path_to_cache=None if cache is None else str(cache),
        tokenizer=DemoTokenizer(VOCAB),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )


def _build(prefixes: list[str], weights: list[float], size: int, cache: Path | None) -> Any:
    config = _config(prefixes, weights, cache)
    return BlendedMegatronDatasetBuilder(GPTDataset, [size, 0, 0], lambda: True, config).build()[0]


@pytest.fixture
def corpus(make_corpus: Callable[..., dict[str, str]]) -> dict[str, str]:
    return make_corpus({"a": 40, "b": 60, "c": 30, "d": 20}, vocab=VOCAB, mean_len=40)


def test_builder_constructs_the_exact_ratio_class_and_reads_end_to_end(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    prefixes = list(corpus.values())
    weights = [0.4, 0.3, 0.2, 0.1]
    with use_exact_ratio_blending():
        ds = _build(prefixes, weights, 500, tmp_path / "cache")
    assert isinstance(ds, ExactRatioBlendedDataset) and isinstance(ds, BlendedDataset)
    assert builder_module.BlendedDataset is BlendedDataset  # the patch was undone
    assert len(ds) == ds.size
    want_index, want_sample = build_blend_indices(ds.weights, len(ds))
    np.testing.assert_array_equal(ds.dataset_index, want_index)
    assert ds.dataset_index.dtype == np.uint8  # 4 datasets: the narrowest dtype
    band = VOCAB // 4
    seen = np.zeros(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        sample = ds[i]
        k = int(sample["dataset_id"])
        seen[i] = k
        tokens = sample["tokens"].numpy()
        assert tokens.shape == (SEQ,)
        # Every token comes from dataset k's band of ids (the corpus gives each one its own).
        assert np.all((tokens >= k * band) & (tokens < (k + 1) * band)), (i, k)
        assert want_sample[i] == ds.dataset_sample_index[i]
    counts = np.bincount(seen, minlength=4)
    n = np.arange(1, len(ds) + 1)
    for k in range(4):
        assert np.max(np.abs(np.cumsum(seen == k) - ds.weights[k] * n)) < 1.0
    assert counts.sum() == len(ds)


def test_cache_is_named_by_algorithm_and_reused(corpus: dict[str, str], tmp_path: Path) -> None:
    prefixes, weights = list(corpus.values()), [1.0, 2.0, 3.0, 4.0]
    cache = tmp_path / "cache"
    with use_exact_ratio_blending():
        first = _build(prefixes, weights, 300, cache)
    files = sorted(p.name for p in cache.iterdir() if "ExactRatioBlendedDataset" in p.name)
    assert [f.split("-", 1)[1] for f in files] == [
        "ExactRatioBlendedDataset-train-dataset_index.npy",
        "ExactRatioBlendedDataset-train-dataset_sample_index.npy",
        "ExactRatioBlendedDataset-train-description.txt",
    ]
    description = next(cache.glob("*ExactRatioBlendedDataset-train-description.txt"))
    assert ALGORITHM_VERSION in description.read_text()
    index_file = next(cache.glob("*ExactRatioBlendedDataset-train-dataset_index.npy"))
    stamp = index_file.stat().st_mtime_ns
    # Megatron's own class on the same blend has another hash, so another cache name (built
    # without a cache here: Megatron's class needs torch.distributed for one).
    megatron_ds = _build(prefixes, weights, 300, None)
    assert type(megatron_ds) is BlendedDataset
    assert megatron_ds.unique_description_hash != first.unique_description_hash
    with use_exact_ratio_blending():
        second = _build(prefixes, weights, 300, cache)
    assert index_file.stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert isinstance(second.dataset_index, np.memmap)
    assert second.dataset_index.dtype == np.uint8  # the narrowest dtype, on disk too
    np.testing.assert_array_equal(second.dataset_index, first.dataset_index)
    # A corrupt cache file is a clear error that says how to recover.
    index_file.write_bytes(b"not a numpy file")
    with use_exact_ratio_blending(), pytest.raises(DataError, match="delete it"):
        _build(prefixes, weights, 300, cache)


def test_lazy_lookups_match_materialised(
    corpus: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefixes, weights = list(corpus.values()), [0.1, 0.2, 0.3, 0.4]
    with use_exact_ratio_blending():
        full = _build(prefixes, weights, 400, tmp_path / "full")
    with use_exact_ratio_blending(lazy_above=100):
        lazy = _build(prefixes, weights, 400, tmp_path / "lazy")
    assert lazy.lazy and lazy.dataset_index is None
    assert not any(p.suffix == ".npy" for p in (tmp_path / "lazy").rglob("*Exact*"))
    for i in range(0, 400, 7):
        assert lazy.locate(i) == full.locate(i)
        np.testing.assert_array_equal(lazy[i]["tokens"], full[i]["tokens"])
    np.testing.assert_array_equal(lazy.realised_counts, full.realised_counts)
    assert ExactRatioBlendedDataset.lazy_above is None  # restored with the patch
    monkeypatch.setenv(LAZY_ENV, "0")
    with use_exact_ratio_blending():
        from_env = _build(prefixes, weights, 400, tmp_path / "env")
    assert from_env.lazy and from_env.locate(399) == full.locate(399)
    for bad in ("lots", "1.5", "1e400"):
        monkeypatch.setenv(LAZY_ENV, bad)
        with use_exact_ratio_blending(), pytest.raises(DataError, match=LAZY_ENV):
            _build(prefixes, weights, 400, tmp_path / "bad")


@pytest.mark.parametrize("bad", [1.5, -1, True, "100"])
def test_lazy_above_must_be_a_whole_number(bad: object) -> None:
    with pytest.raises(DataError, match="lazy_above must be a whole number"):
        use_exact_ratio_blending(lazy_above=bad)  # type: ignore[arg-type]
    assert builder_module.BlendedDataset is BlendedDataset  # nothing was patched


def test_patch_is_idempotent_and_undoes_cleanly() -> None:
    original = builder_module.BlendedDataset
    outer = use_exact_ratio_blending()
    inner = use_exact_ratio_blending()
    assert builder_module.BlendedDataset is ExactRatioBlendedDataset
    assert outer.active and not inner.active
    inner.undo()
    assert builder_module.BlendedDataset is ExactRatioBlendedDataset
    outer.undo()
    outer.undo()
    assert builder_module.BlendedDataset is original


def test_build_logs_requested_and_realised_per_domain(
    corpus: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    prefixes = list(corpus.values())
    with caplog.at_level(logging.INFO, logger="regmix_plugin.megatron"), use_exact_ratio_blending():
        ds = _build(prefixes, [0.25, 0.25, 0.25, 0.25], 200, tmp_path / "cache")
    text = "\n".join(r.getMessage() for r in caplog.records if r.name == "regmix_plugin.megatron")
    rows = ds.report()
    for row in rows:
        assert f"{row['prefix']}: samples {row['requested_samples']:.2f}" in text
        assert row["realised_tokens"] == row["realised_samples"] * SEQ
        assert row["epochs"] is not None and row["epochs"] > 0
    assert "epochs" in text and "tokens" in text


def test_oversampling_without_repetition_is_a_clear_error(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    config = _config(list(corpus.values()), [0.5, 0.5, 0.0, 0.0], tmp_path / "c")
    small = [GPTDataset.build_low_level_dataset(p, config) for p in list(corpus.values())[:2]]
    from megatron.core.datasets.utils import Split

    mids = [
        GPTDataset(
            ll,
            p,
            np.arange(ll.document_indices.shape[0] - 1, dtype=np.int32),
            5,
            Split.train,
            config,
        )
        for ll, p in zip(small, list(corpus.values())[:2], strict=True)
    ]
    with pytest.raises(DataError, match="mid_level_dataset_surplus"):
        ExactRatioBlendedDataset(mids, [0.5, 0.5], 10 * len(mids[0]), config)
    ok = ExactRatioBlendedDataset(mids, [1.0, 0.0], len(mids[0]), config)
    assert set(np.unique(ok.dataset_index)) == {0}  # weight 0: never sampled


def test_missing_or_corrupt_prefixes(corpus: dict[str, str], tmp_path: Path) -> None:
    prefixes = list(corpus.values())
    tokens = check_prefixes(prefixes)
    assert all(t > 0 for t in tokens)
    with pytest.raises(DataError, match="index file not found"):
        check_prefixes([str(tmp_path / "nowhere")])
    Path(f"{prefixes[0]}.idx").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a Megatron index"):
        check_prefixes(prefixes[:1])
    bin_path = Path(f"{prefixes[1]}.bin")
    bin_path.write_bytes(bin_path.read_bytes()[:10])
    with pytest.raises(DataError, match="truncated"):
        check_prefixes(prefixes[1:2])


def test_blend_demo_runs_and_reports(tmp_path: Path) -> None:
    rows = run_blend_demo(tmp_path / "demo")
    assert sum(r.realised for r in rows) == sum(r.realised_read for r in rows)
    for r in rows:
        assert r.realised == r.realised_read
        assert abs(r.realised - r.requested) < 1
        assert r.deviation_ours < 1.0
    assert "| web |" in format_table(rows)
    assert os.path.isfile(tmp_path / "demo" / "data" / "web_text_document.idx")


def test_a_split_of_size_zero_is_empty_as_in_megatron(
    corpus: dict[str, str], tmp_path: Path
) -> None:
    """``eval_iters: 0`` asks the builder for 0 validation and test samples of splits that do
    exist (split 90,5,5): megatron-core's BlendedDataset is then empty, and so is ours (and
    nothing is cached for it)."""
    prefixes, weights = list(corpus.values()), [0.4, 0.3, 0.2, 0.1]

    def build(cache: Path | None) -> list[Any]:
        # (megatron-core's own class needs torch.distributed for a cache: none for it here)
        config = _config(prefixes, weights, cache)
        object.__setattr__(config, "split", "90,5,5")
        config.__post_init__()
        builder = BlendedMegatronDatasetBuilder(GPTDataset, [200, 0, 0], lambda: True, config)
        return list(builder.build())

    stock = build(None)
    with use_exact_ratio_blending():
        ours = build(tmp_path / "cache")
    assert [len(d) for d in ours] == [len(d) for d in stock]
    assert len(ours[0]) >= 200 and len(ours[1]) == len(ours[2]) == 0
    assert all(isinstance(d, ExactRatioBlendedDataset) for d in ours)
    assert ours[1].dataset_index.shape == (0,) and ours[1].dataset_sample_index.shape == (0,)
    assert ours[1].dataset_index.dtype == np.uint8
    with pytest.raises(IndexError):
        ours[1][0]
    cached = {p.name.split("-")[-1] for p in (tmp_path / "cache").rglob("*dataset_index.npy")}
    assert cached and all(len(np.load(p)) > 0 for p in (tmp_path / "cache").rglob("*_index.npy"))
