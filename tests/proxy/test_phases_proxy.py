"""A proxy trained on a phase schedule: real CPU training over real ``.bin/.idx`` files."""

from __future__ import annotations

import numpy as np
from proxy_corpus import study_dict, train

from regmix_plugin.blending import build_blend_indices
from regmix_plugin.blending.apportionment import apportion
from regmix_plugin.schedules import join_schedule

MAIN = {"a": 0.7, "b": 0.3, "c": 0.0}
QUALITY = {"a": 0.0, "b": 0.2, "c": 0.8}


def test_proxy_trains_on_the_schedule_phase_by_phase(band_corpus, tmp_path) -> None:
    study = study_dict(band_corpus, tmp_path)
    weights = join_schedule(["main", "quality"], [0.75, 0.25], [MAIN, QUALITY])
    metrics = train(study, weights, "sched-1", tmp_path / "out")
    assert metrics["weights"] == weights
    cfg = study["proxy"]
    num_samples = cfg["num_tokens"] // cfg["seq_length"]
    # Independently: phase lengths by largest remainder, each phase a plain exact-ratio blend
    # over the prefixes (one per domain here), counts summed over the phases.
    lengths = apportion(np.array([0.75, 0.25]), num_samples)
    want = np.zeros(3, dtype=np.int64)
    for mix, n in zip((MAIN, QUALITY), lengths.tolist(), strict=True):
        index = build_blend_indices([mix["a"], mix["b"], mix["c"]], n)[0]
        want += np.bincount(index, minlength=3)
    got = [metrics["realised_samples"].get(band_corpus[d], 0) for d in "abc"]
    np.testing.assert_array_equal(got, want)
    assert metrics["realised_tokens"]["c"] == want[2] * cfg["seq_length"]
    # Another schedule with the same run-average weights is another proxy (its own fingerprint).
    flat = {"a": 0.525, "b": 0.275, "c": 0.2}
    plain = train(study, flat, "flat-1", tmp_path / "flat")
    assert plain["metrics"] != metrics["metrics"]
