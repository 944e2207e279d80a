"""Phase schedules against a numpy oracle: per-phase bounds, totals, continuing sample indices."""

from __future__ import annotations

import pickle
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regmix_plugin.blending import build_blend_indices
from regmix_plugin.blending.phases import (
    BlendSchedule,
    LazyScheduleIndex,
    Phase,
    PhaseSchedule,
    build_schedule_indices,
    read_blend_schedule,
    schedule_counts,
    write_blend_schedule,
)
from regmix_plugin.blending.reference import build_blend_indices_reference
from regmix_plugin.errors import DataError


def _oracle_lengths(shares: list[float], n: int) -> list[int]:
    """Largest remainder in exact rationals (ties to the lower index): the phase lengths."""
    quotas = [Fraction(s) * n / sum(Fraction(x) for x in shares) for s in shares]
    floors = [q.numerator // q.denominator for q in quotas]
    order = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - floors[i]), i))
    for i in order[: n - sum(floors)]:
        floors[i] += 1
    return floors


def _oracle(weights: list[list[float]], lengths: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Phase by phase with the numpy reference sampler; sample indices offset by hand."""
    k = len(weights[0])
    index_parts, sample_parts = [], []
    used = np.zeros(k, dtype=np.int64)
    for w, n in zip(weights, lengths, strict=True):
        if n == 0:
            continue
        index, sample = build_blend_indices_reference(np.asarray(w, dtype=np.float64), n)
        index_parts.append(index)
        shifted = sample.copy()
        for j in range(k):
            shifted[index == j] += used[j]
            used[j] += int(np.sum(index == j))
        sample_parts.append(shifted)
    return np.concatenate(index_parts), np.concatenate(sample_parts)


def _check_properties(
    dataset_index: np.ndarray, sample: np.ndarray, weights: list[list[float]], lengths: list[int]
) -> None:
    k = len(weights[0])
    start = 0
    for w, n in zip(weights, lengths, strict=True):
        seg = dataset_index[start : start + n].astype(np.int64)
        start += n
        if n == 0:
            continue
        share = np.asarray(w, dtype=np.float64) / np.sum(w)
        onehot = np.zeros((n, k), dtype=np.int64)
        onehot[np.arange(n), seg] = 1
        prefix = np.cumsum(onehot, axis=0)
        dev = np.abs(prefix - share[None, :] * np.arange(1, n + 1)[:, None])
        assert dev.max() < 1 + 1e-9  # every prefix of the phase, within one sample
        totals = prefix[-1]
        assert totals.sum() == n and np.all(np.abs(totals - share * n) < 1)
        assert np.all(totals[share == 0] == 0)
    # A dataset's samples over the whole run are 0, 1, 2, ... in order (phases continue them).
    for j in range(k):
        mine = sample[dataset_index.astype(np.int64) == j]
        np.testing.assert_array_equal(mine, np.arange(mine.size))


_weight = st.one_of(st.floats(1e-3, 1e3), st.just(0.0), st.just(1.0))


@st.composite
def _schedules(draw: st.DrawFn) -> tuple[list[list[float]], list[float], int]:
    k = draw(st.integers(1, 6))
    num_phases = draw(st.integers(1, 4))
    weights = [
        draw(st.lists(_weight, min_size=k, max_size=k).filter(lambda w: max(w) > 0))
        for _ in range(num_phases)
    ]
    raw = [draw(st.integers(1, 20)) for _ in range(num_phases)]
    shares = [r / sum(raw) for r in raw]
    n = draw(st.integers(1, 14_000))  # several 4,096-sample blocks per phase
    return weights, shares, n


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_schedules())
def test_schedule_matches_the_oracle_and_keeps_its_promises(
    case: tuple[list[list[float]], list[float], int],
) -> None:
    weights, shares, n = case
    # Shares from integer ratios may not sum to 1.0 exactly in floats: the last one takes the rest.
    shares[-1] = 1.0 - sum(shares[:-1])
    schedule = PhaseSchedule(
        phases=tuple(Phase(weights=tuple(w), share=s) for w, s in zip(weights, shares, strict=True))
    )
    lengths = _oracle_lengths(shares, n)
    np.testing.assert_array_equal(schedule.phase_samples(n), lengths)
    dataset_index, sample = build_schedule_indices(schedule, n, num_threads=1)
    want_index, want_sample = _oracle(weights, lengths)
    np.testing.assert_array_equal(dataset_index.astype(np.int64), want_index)
    np.testing.assert_array_equal(sample, want_sample)
    _check_properties(dataset_index, sample, weights, lengths)
    counts = schedule_counts(schedule, n)
    for p, length in enumerate(lengths):
        lo = sum(lengths[:p])
        seg = dataset_index[lo : lo + length].astype(np.int64)
        np.testing.assert_array_equal(counts[p], np.bincount(seg, minlength=len(weights[0])))
    lazy = LazyScheduleIndex(schedule, n)
    picks = np.random.default_rng(n).integers(0, n, size=min(n, 300))
    got_k, got_j = lazy.lookup(picks)
    np.testing.assert_array_equal(got_k, want_index[picks])
    np.testing.assert_array_equal(got_j, want_sample[picks])
    for i in picks[:20].tolist():
        assert lazy[i] == (int(want_index[i]), int(want_sample[i]))


def test_lazy_walk_over_the_whole_run_equals_materialised() -> None:
    schedule = PhaseSchedule(
        phases=(
            Phase(weights=(0.5, 0.3, 0.2, 0.0), share=0.6, name="long"),
            Phase(weights=(0.1, 0.1, 0.1, 0.7), share=0.3, name="quality"),
            Phase(weights=(0.0, 0.0, 0.5, 0.5), share=0.1, name="anneal"),
        )
    )
    n = 30_001
    dataset_index, sample = build_schedule_indices(schedule, n)
    lazy = pickle.loads(pickle.dumps(LazyScheduleIndex(schedule, n)))  # DataLoader workers
    got_k, got_j = lazy.lookup(np.arange(n))
    np.testing.assert_array_equal(got_k, dataset_index.astype(np.int64))
    np.testing.assert_array_equal(got_j, sample)
    lengths = schedule.phase_samples(n).tolist()
    assert lengths == [18_001, 9_000, 3_000]  # 18000.6, 9000.3, 3000.1: the .6 gets the unit
    _check_properties(dataset_index, sample, [list(p.weights) for p in schedule.phases], lengths)


def test_one_phase_is_the_plain_blend() -> None:
    w = (0.25, 0.5, 0.25)
    one = PhaseSchedule(phases=(Phase(weights=w),))
    got = build_schedule_indices(one, 10_000)
    want = build_blend_indices(w, 10_000)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0].dtype == want[0].dtype  # whatever dtype the sampler gives, unchanged


def test_sample_and_iteration_boundaries() -> None:
    phases = (
        Phase(weights=(1.0, 0.0), end_iteration=30),
        Phase(weights=(0.0, 1.0), end_sample=1_000),
        Phase(weights=(1.0, 1.0)),
    )
    schedule = PhaseSchedule(phases=phases)
    np.testing.assert_array_equal(
        schedule.phase_samples(1_600, global_batch_size=8), [240, 760, 600]
    )
    index, sample = build_schedule_indices(schedule, 1_600, global_batch_size=8)
    assert set(index[:240].tolist()) == {0} and set(index[240:1000].tolist()) == {1}
    # Dataset 0 resumes at its 241st sample in the third phase, dataset 1 at its 761st.
    assert sample[1000:].min() >= 240
    assert sample[index == 1].tolist() == list(range(760 + 300))
    with pytest.raises(DataError, match="global_batch_size"):
        schedule.phase_samples(1_600)
    with pytest.raises(DataError, match="must increase"):
        schedule.phase_samples(900, global_batch_size=8)


@pytest.mark.parametrize(
    ("phases", "match"),
    [
        ((), "at least one phase"),
        ((Phase(weights=(1.0,), share=0.5), Phase(weights=(1.0,), share=0.4)), "sum to 1"),
        ((Phase(weights=(1.0,), share=0.5), Phase(weights=(1.0,))), "every phase a share"),
        ((Phase(weights=(1.0,)), Phase(weights=(1.0,))), "every phase but the last"),
        ((Phase(weights=(1.0,), share=0.5), Phase(weights=(1.0, 2.0), share=0.5)), "per dataset"),
    ],
)
def test_bad_schedules_are_clear_errors(phases: tuple[Phase, ...], match: str) -> None:
    with pytest.raises(DataError, match=match):
        PhaseSchedule(phases=phases)


def test_bad_phase_fields() -> None:
    with pytest.raises(DataError, match="all 2"):
        Phase(weights=(0.0, 0.0))
    with pytest.raises(DataError, match="give one of them"):
        Phase(weights=(1.0,), share=0.5, end_sample=3)
    with pytest.raises(DataError, match="share must lie"):
        Phase(weights=(1.0,), share=0.0)
    with pytest.raises(DataError, match="end_iteration"):
        Phase(weights=(1.0,), end_iteration=0)


def test_schedule_file_round_trip_and_errors(tmp_path: Path) -> None:
    blend = BlendSchedule(
        prefixes=("data/a", "data/b"),
        schedule=PhaseSchedule(
            phases=(
                Phase(weights=(0.7, 0.3), share=0.8, name="main"),
                Phase(weights=(0.2, 0.8), share=0.2, name="quality"),
            )
        ),
        domains=("a", "b"),
    )
    path = write_blend_schedule(tmp_path / "schedule.json", blend)
    assert read_blend_schedule(path) == blend
    # Run average over 1000 samples: 800 at (.7, .3) and 200 at (.2, .8) -> (600, 400) samples.
    assert blend.average_weights(1_000) == [0.6, 0.4]
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "regmix-phase-schedule-v1", "prefixes": ["a"], "phases": []}')
    with pytest.raises(DataError, match=r"bad\.json"):
        read_blend_schedule(bad)
    bad.write_text('{"format": "other"}')
    with pytest.raises(DataError, match="not a schedule file"):
        read_blend_schedule(bad)
    with pytest.raises(DataError, match="2 weights each"):
        BlendSchedule(prefixes=("a",), schedule=blend.schedule)
