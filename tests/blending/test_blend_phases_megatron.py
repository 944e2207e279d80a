"""A phase schedule served inside real megatron-core: builder, GPTDataset, caches, lazy form."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig

from regmix_plugin.blend_demo import DemoTokenizer
from regmix_plugin.blending import build_blend_indices
from regmix_plugin.blending.phases import (
    BlendSchedule,
    Phase,
    PhaseSchedule,
    write_blend_schedule,
)
from regmix_plugin.errors import DataError
from regmix_plugin.megatron import (
    LAZY_ENV,
    SCHEDULE_ENV,
    ExactRatioBlendedDataset,
    use_exact_ratio_blending,
)

VOCAB = 128
SEQ = 16
SIZE = 600


def _build(prefixes: list[str], weights: list[float], cache: Path | None, split: str) -> Any:
    config = GPTDatasetConfig(
        random_seed=1,
        sequence_length=SEQ,
        blend=(prefixes, weights),
        split=split,
        path_to_cache=None if cache is None else str(cache),
        tokenizer=DemoTokenizer(VOCAB),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        mid_level_dataset_surplus=0.05,
    )
    sizes = [SIZE, SIZE // 2 if split != "100,0,0" else 0, 0]
    return BlendedMegatronDatasetBuilder(GPTDataset, sizes, lambda: True, config).build()


@pytest.fixture
def schedule_file(make_corpus: Callable[..., dict[str, str]], tmp_path: Path) -> BlendSchedule:
    corpus = make_corpus({"a": 60, "b": 60, "c": 40, "d": 40}, vocab=VOCAB, mean_len=40)
    blend = BlendSchedule(
        prefixes=tuple(corpus.values()),
        schedule=PhaseSchedule(
            phases=(
                Phase(weights=(0.5, 0.4, 0.1, 0.0), share=0.75, name="main"),
                Phase(weights=(0.1, 0.1, 0.3, 0.5), share=0.25, name="quality"),
            )
        ),
    )
    write_blend_schedule(tmp_path / "schedule.json", blend)
    return blend


def _band(tokens: np.ndarray) -> int:
    return int(tokens.min()) // (VOCAB // 4)


def test_builder_serves_the_schedule_end_to_end(
    schedule_file: BlendSchedule, tmp_path: Path
) -> None:
    blend = schedule_file
    prefixes = list(blend.prefixes)
    with use_exact_ratio_blending(schedule=tmp_path / "schedule.json"):
        train = _build(prefixes, blend.average_weights(SIZE), tmp_path / "cache", "100,0,0")[0]
    assert isinstance(train, ExactRatioBlendedDataset) and train.schedule == blend
    assert ExactRatioBlendedDataset.schedule_file is None  # restored with the patch
    lengths = [450, 150]  # 0.75 and 0.25 of 600
    # Expected dataset of every sample: the plain blend of each phase, one after the other.
    want = np.concatenate(
        [
            build_blend_indices(p.weights, n)[0]
            for p, n in zip(blend.schedule.phases, lengths, strict=True)
        ]
    ).astype(np.int64)
    seen = np.array([_band(train[i]["tokens"].numpy()) for i in range(len(train))])
    np.testing.assert_array_equal(seen, want)  # the tokens come from the scheduled dataset
    assert np.all(seen[:450] != 3)  # d has weight 0 in the main phase
    np.testing.assert_array_equal(train.phase_counts().sum(axis=1), lengths)
    # Each mid-level GPTDataset is read in order across the phases: sample j of dataset k is
    # megatron-core's own sample j, whatever phase it falls in.
    for k, mid in enumerate(train.datasets):
        mine = [train[i]["tokens"].numpy() for i in np.flatnonzero(want == k)]
        for j, tokens in enumerate(mine):
            np.testing.assert_array_equal(tokens, mid[j]["tokens"].numpy())
    rows = train.report()
    np.testing.assert_allclose(
        [r["requested_samples"] for r in rows],
        450 * np.array([0.5, 0.4, 0.1, 0.0]) + 150 * np.array([0.1, 0.1, 0.3, 0.5]),
    )


def test_cache_names_the_schedule_and_lazy_matches(
    schedule_file: BlendSchedule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blend = schedule_file
    prefixes, avg = list(blend.prefixes), blend.average_weights(SIZE)
    cache = tmp_path / "cache"
    with use_exact_ratio_blending(schedule=tmp_path / "schedule.json"):
        phased = _build(prefixes, avg, cache, "100,0,0")[0]
    with use_exact_ratio_blending():
        plain = _build(prefixes, avg, cache, "100,0,0")[0]
    assert phased.unique_description_hash != plain.unique_description_hash
    assert '"schedule"' in phased.unique_description and "quality" in phased.unique_description
    assert '"schedule"' not in plain.unique_description  # no schedule: today's description
    # Loaded from the cache the second time: same arrays.
    monkeypatch.setenv(SCHEDULE_ENV, str(tmp_path / "schedule.json"))
    with use_exact_ratio_blending():
        again = _build(prefixes, avg, cache, "100,0,0")[0]
    assert isinstance(again.dataset_index, np.memmap)
    np.testing.assert_array_equal(again.dataset_sample_index, phased.dataset_sample_index)
    monkeypatch.setenv(LAZY_ENV, "0")
    with use_exact_ratio_blending():
        lazy = _build(prefixes, avg, tmp_path / "lazy", "100,0,0")[0]
    assert lazy.lazy and lazy.dataset_index is None
    for i in range(0, SIZE, 5):
        assert lazy.locate(i) == phased.locate(i)
    np.testing.assert_array_equal(lazy.realised_counts, phased.realised_counts)


def test_schedule_applies_to_its_splits_only_and_checks_prefixes(
    schedule_file: BlendSchedule, tmp_path: Path
) -> None:
    blend = schedule_file
    prefixes, avg = list(blend.prefixes), blend.average_weights(SIZE)
    with use_exact_ratio_blending(schedule=tmp_path / "schedule.json"):
        train, valid, _ = _build(prefixes, avg, None, "60,40,0")
    assert train.schedule is not None and valid.schedule is None
    assert valid.weights == pytest.approx(list(np.asarray(avg) / sum(avg)))
    with (
        use_exact_ratio_blending(schedule=tmp_path / "schedule.json"),
        pytest.raises(DataError, match=r"schedule\.json names the prefixes"),
    ):
        _build(prefixes[::-1], avg[::-1], None, "100,0,0")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(DataError, match=r"broken\.json"):
        use_exact_ratio_blending(schedule=tmp_path / "broken.json")
