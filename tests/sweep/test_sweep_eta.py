"""The sweep's ETA: the median finished duration times the work left, over the launcher's slots."""

from __future__ import annotations

import pytest

from regmix_plugin.sweep.registry import RunRecord, estimate_eta


def _records(now: float) -> list[RunRecord]:
    return [
        RunRecord("a", "done", duration_s=10.0),
        RunRecord("b", "done", duration_s=14.0),
        RunRecord("c", "done", duration_s=12.0),
        RunRecord("d", "running", started_at=now - 4.0),
        RunRecord("e", "pending"),
        RunRecord("f", "pending"),
        RunRecord("g", "failed"),
    ]


def test_eta_divides_by_the_launcher_slots_not_the_momentary_running_count() -> None:
    now = 1000.0
    # median 12 s; left: 3 waiting x 12 + (12 - 4) for the running one = 44 s of work
    assert estimate_eta(_records(now), now) == pytest.approx(44.0)  # one running right now
    assert estimate_eta(_records(now), now, concurrency=2) == pytest.approx(22.0)
    # more slots than runs left: the 4 runs left bound the parallelism
    assert estimate_eta(_records(now), now, concurrency=16) == pytest.approx(11.0)


def test_eta_is_unknown_before_a_run_has_finished() -> None:
    records = [RunRecord("a", "running", started_at=1.0), RunRecord("b", "pending")]
    assert estimate_eta(records, 5.0, concurrency=2) is None
