"""Proxies trained two at a time in worker processes give what one-at-a-time training gives."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from proxy_corpus import as_study, study_dict, train

from regmix_plugin.domains import load_catalogue
from regmix_plugin.layout import LOG_FILE
from regmix_plugin.proxy.pool import ProxyJob, train_proxies
from regmix_plugin.proxy.train import METRICS_FILE

pytestmark = pytest.mark.slow

MIXES = {
    "m1": {"a": 0.6, "b": 0.3, "c": 0.1},
    "m2": {"a": 0.1, "b": 0.2, "c": 0.7},
    "m3": {"a": 0.3, "b": 0.4, "c": 0.3},
}


def test_workers_give_the_in_process_results_in_job_order(band_corpus, tmp_path: Path) -> None:
    study = as_study(study_dict(band_corpus, tmp_path, targets={"band_a": [band_corpus["a"]]}))
    proxy = study.require("proxy")
    catalogue = load_catalogue(study.require("domains"))
    # The reference: each proxy trained by itself in this process, as `regmix train-proxy` does.
    alone = {
        mid: train(study, weights, mid, tmp_path / "alone" / mid) for mid, weights in MIXES.items()
    }
    jobs = [
        ProxyJob(
            proxy=dataclasses.replace(proxy, seed=proxy.seed),
            weights=weights,
            mixture_id=mid,
            out_dir=tmp_path / "pool" / mid,
            label=mid,
        )
        for mid, weights in MIXES.items()
    ]
    events: list[tuple[int, str, bool]] = []
    results = train_proxies(
        jobs,
        catalogue,
        eval_cache=tmp_path / "pool-cache",
        num_concurrent=2,
        on_event=lambda n, job, starting: events.append((n, job.label, starting)),
    )
    assert [r["mixture_id"] for r in results] == list(MIXES)
    for mid, metrics in zip(MIXES, results, strict=True):
        assert metrics["metrics"] == alone[mid]["metrics"], mid
        assert metrics["train_loss"] == alone[mid]["train_loss"], mid
        on_disk = json.loads((tmp_path / "pool" / mid / METRICS_FILE).read_text())
        assert on_disk["metrics"] == metrics["metrics"]
        # The worker's log records and library output went to the proxy's own train.log.
        log = (tmp_path / "pool" / mid / LOG_FILE).read_text()
        assert "megatron.core" in log and "step" in log
    finished = [n for n, _, starting in events if not starting]
    assert finished == [1, 2, 3]
    assert sum(starting for _, _, starting in events) == 2  # the first two handed to the pool
