"""The active (sequential) mixture design: the acquisition library, and rounds in ``regmix run``.

The library tests use explicit arrays. The pipeline test runs a real tiny study (real synthetic
.bin/.idx files, real proxies trained by the local launcher, the real GP ensemble of ``regmix
fit``) with ``sample.strategy: active``: it is SIGKILLed once round 1 is recorded, rerun to the
end, and its record and table are checked against the bounds, the epoch caps and a fresh
re-pick of round 1 from the same finished runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix_plugin import active
from regmix_plugin.domains import load_catalogue
from regmix_plugin.mixtures import ActiveSettings, SampleConfig, read_mixtures
from regmix_plugin.study import load_study

# -- the library -----------------------------------------------------------------------------------


def _simplex(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    return rng.dirichlet(np.ones(d), size=n)


def test_thinning_spreads_the_rows_more_than_a_random_subset() -> None:
    rng = np.random.default_rng(0)
    x = _simplex(rng, 400, 5)
    keep = active.thin_space_filling(x, 20)
    assert len(set(keep.tolist())) == 20 and 0 in keep

    def min_pair(rows: np.ndarray) -> float:
        f = np.sqrt(rows / 2)
        d = np.sqrt(((f[:, None, :] - f[None, :, :]) ** 2).sum(-1))
        return float(d[np.triu_indices(len(rows), 1)].min())

    random_subsets = [min_pair(x[rng.choice(400, 20, replace=False)]) for _ in range(50)]
    assert min_pair(x[keep]) > max(random_subsets)


def test_thompson_batch_takes_each_members_best_far_from_the_others() -> None:
    rng = np.random.default_rng(1)
    cands = _simplex(rng, 500, 4)
    members = rng.normal(size=(3, 500))
    existing = cands[:2]
    picks = active.thompson_batch(members, cands, existing, 6, np.random.default_rng(5), 0.2)
    chosen = cands[picks]
    for i, p in enumerate(picks):
        assert np.abs(existing - cands[p]).sum(axis=1).min() >= 0.2
        others = np.delete(chosen, i, axis=0)
        assert np.abs(others - cands[p]).sum(axis=1).min() >= 0.2
    # The first pick is the best allowed candidate of the member the seeded permutation names.
    m = np.random.default_rng(5).permutation(3)[0]
    allowed = np.abs(cands[:, None, :] - existing[None]).sum(-1).min(axis=1) >= 0.2
    assert picks[0] == int(np.argmin(np.where(allowed, members[m], np.inf)))
    assert picks == active.thompson_batch(
        members, cands, existing, 6, np.random.default_rng(5), 0.2
    )


def _quadratic_members(optimum: np.ndarray, num: int = 8):
    shifts = np.random.default_rng(3).normal(scale=0.02, size=(num, len(optimum)))

    def members(x: np.ndarray) -> np.ndarray:
        return np.stack([((x - (optimum + s)) ** 2).sum(axis=1) for s in shifts])

    return members


def test_propose_round_respects_bounds_grid_and_seed() -> None:
    prior = np.array([0.4, 0.3, 0.2, 0.1])
    lower = np.array([0.0, 0.05, 0.0, 0.0])
    upper = np.array([0.5, 1.0, 0.3, 0.15])
    optimum = np.array([0.45, 0.3, 0.15, 0.1])
    settings = ActiveSettings(num_candidates=4000, min_distance=0.02, top_k=10)
    observed = np.array([[0.25, 0.25, 0.25, 0.25], [0.4, 0.4, 0.1, 0.1]])
    kwargs = dict(
        prior=prior,
        strengths=np.geomspace(0.1, 5, 15),
        lower=lower,
        upper=upper,
        settings=settings,
        batch_size=6,
        seed=7,
        round_index=2,
        num_units=1000,
        min_weight=0.001,
    )
    a = active.propose_round(_quadratic_members(optimum), observed, **kwargs)
    b = active.propose_round(_quadratic_members(optimum), observed, **kwargs)
    assert np.array_equal(a.picks, b.picks) and np.array_equal(a.chosen, b.chosen)
    c = active.propose_round(_quadratic_members(optimum), observed, **{**kwargs, "seed": 8})
    assert not np.array_equal(a.picks, c.picks)
    assert len(a.picks) == 6
    assert np.all(a.picks >= lower - 1e-12) and np.all(a.picks <= upper + 1e-12)
    assert np.allclose(a.picks.sum(axis=1), 1.0)
    assert np.allclose(a.picks * 1000, np.round(a.picks * 1000))  # on the grid
    # The picks crowd the optimum: closer to it on average than the prior's draws.
    prior_draws = np.random.default_rng(0).dirichlet(prior * 5, size=2000)
    assert np.abs(a.picks - optimum).sum(1).mean() < np.abs(prior_draws - optimum).sum(1).mean()
    assert np.abs(a.chosen - optimum).sum() < 0.15
    assert a.interval[0] <= a.predicted <= a.interval[1]


def test_stop_rule() -> None:
    names = ["a", "b"]
    settings = ActiveSettings(stop_weight_tolerance=0.05, stop_value_tolerance=0.01)
    prop = active.RoundProposal(np.zeros((0, 2)), np.array([0.5, 0.5]), 1.0, (0.9, 1.1), 10)
    near = {"chosen": {"a": 0.52, "b": 0.48}, "predicted": 1.005}
    far = {"chosen": {"a": 0.6, "b": 0.4}, "predicted": 1.005}
    assert active.has_stopped(near, prop, names, settings)
    assert not active.has_stopped(far, prop, names, settings)
    assert not active.has_stopped({**near, "predicted": 1.1}, prop, names, settings)
    assert not active.has_stopped(near, prop, names, ActiveSettings())  # off by default


def test_active_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="num_initial"):
        SampleConfig(num_mixtures=4, strategy="active", active=ActiveSettings(num_initial=5))
    with pytest.raises(ValueError, match="anchors are drawn in round 0"):
        SampleConfig(
            num_mixtures=10,
            strategy="active",
            active=ActiveSettings(num_initial=8),
            num_anchor_mixtures=9,
            num_seeds=2,
        )
    with pytest.raises(ValueError, match="local_fraction"):
        ActiveSettings(local_fraction=1.5)
    cfg = SampleConfig(num_mixtures=20, strategy="active", active=ActiveSettings(num_rounds=3))
    assert cfg.initial_size() == 10 and cfg.round_batch_size() == 4
    assert SampleConfig(num_mixtures=20).initial_size() == 20


# -- rounds in ``regmix run`` ----------------------------------------------------------------------

STUDY = {
    "run_dir": "run",
    "synthetic": {
        "data_dir": "data",
        "vocab_size": 16,
        "domains": {"a": 300, "b": 150, "c": 100},
        "hidden_weights": {"a": 0.2, "b": 0.5, "c": 0.3},
        "mean_document_tokens": 64,
        "num_target_documents": 60,
    },
    "domains": {
        # c holds about 6,400 tokens: its epoch cap 4 x 6,400 / 100,000 binds (~0.26).
        "num_target_tokens": 100000,
        "max_epochs": 4,
        "entries": [{"name": n, "prefixes": [f"data/{n}_text_document"]} for n in "abc"],
    },
    "sample": {
        "num_mixtures": 10,
        "seed": 0,
        "temperature": 0.5,
        "grid": 0.01,
        "min_weight": 0.01,
        "strategy": "active",
        "active": {"num_initial": 8, "num_rounds": 2, "num_candidates": 4000, "min_distance": 0.05},
    },
    "proxy": {
        "preset": "tiny",
        "vocab_size": 16,
        "seq_length": 8,
        "num_tokens": 8192,
        "micro_batch_size": 64,
        "global_batch_size": 64,
        "lr": 0.005,
        "split": "80,20,0",
        "num_eval_tokens": 1024,
        "targets": {"target": ["data/target_text_document"]},
        "num_threads": 1,
    },
    "sweep": {"launcher": "local", "local": {"num_concurrent": 2}},
    "fit": {"regressor": "gp", "targets": ["target_loss/target"], "num_folds": 4, "num_members": 8},
    "optimize": {"target": "target_loss/target", "max_weights": {"a": 0.6}},
}


def _regmix(*args: str, cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "regmix_plugin", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _record(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "rounds.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("active")
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    run_dir = root / "run"
    proc = _regmix("run", str(config), "--to", "sweep", cwd=root)
    deadline = time.monotonic() + 1800  # generous: a loaded 2-core machine trains slowly
    while time.monotonic() < deadline and proc.poll() is None:
        record = _record(run_dir)
        if record is not None and len(record["rounds"]) >= 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended before the kill:\n{proc.communicate()[0][-3000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _record(run_dir)
    assert before is not None and len(before["rounds"]) >= 2, "killed before round 1 was picked"
    done_before = {p.parent.name: p.stat().st_mtime_ns for p in run_dir.glob("sweep/runs/*/DONE")}
    time.sleep(1.0)
    proc = _regmix("run", str(config), "--to", "sweep", cwd=root)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    return {"root": root, "config": config, "run_dir": run_dir, "before": before,
            "done_before": done_before, "after": _record(run_dir)}  # fmt: skip


@pytest.mark.slow
def test_rounds_resume_after_sigkill_without_repicking(rounds_run: dict) -> None:
    before, after = rounds_run["before"], rounds_run["after"]
    assert len(after["rounds"]) == 3  # round 0 + 2 rounds of 1
    for i, entry in enumerate(before["rounds"]):
        assert after["rounds"][i] == entry, f"round {i} was re-picked"
    runs = rounds_run["run_dir"] / "sweep" / "runs"
    for mid, mtime in rounds_run["done_before"].items():
        assert (runs / mid / "DONE").stat().st_mtime_ns == mtime, f"{mid} retrained"
    table = read_mixtures(rounds_run["run_dir"] / "mixtures.csv")
    ids = [mid for e in after["rounds"] for mid in e["ids"]]
    assert table.ids == ids and len(set(ids)) == 10
    assert {p.parent.name for p in runs.glob("*/DONE")} == set(ids)


@pytest.mark.slow
def test_every_pick_respects_bounds_and_epoch_caps(rounds_run: dict) -> None:
    study = load_study(rounds_run["config"])
    catalogue = load_catalogue(study.require("domains"))
    caps = catalogue.max_weights()
    assert caps.min() < 0.6, "the test needs a binding epoch cap"
    table = read_mixtures(rounds_run["run_dir"] / "mixtures.csv")
    assert np.all(table.weights <= caps * (1 + 1e-12))  # every round, round 0 included
    picked = [mid for e in rounds_run["after"]["rounds"][1:] for mid in e["ids"]]
    a = table.names.index("a")
    for mid in picked:
        w = table.weights[table.ids.index(mid)]
        assert w[a] <= 0.6 + 1e-12  # optimize.max_weights
        assert np.allclose(w * 100, np.round(w * 100))  # sample.grid 0.01
    for entry in rounds_run["after"]["rounds"][1:]:
        lo, hi = entry["interval"]
        assert lo <= entry["predicted"] <= hi
        assert all(entry["chosen"][n] <= c + 1e-9 for n, c in zip(table.names, caps, strict=True))


@pytest.mark.slow
def test_same_seed_same_picks(rounds_run: dict, tmp_path: Path) -> None:
    """Round 1 picked again from a copy holding only round 0's runs gives the same mixtures."""
    from regmix_plugin import stages
    from regmix_plugin.layout import RunLayout
    from regmix_plugin.mixtures import Mixtures, write_mixtures

    copy = tmp_path / "run"
    shutil.copytree(rounds_run["run_dir"], copy)
    study = load_study(rounds_run["config"])
    layout = RunLayout(copy)
    table = read_mixtures(copy / "mixtures.csv")
    record = rounds_run["after"]
    n0 = len(record["rounds"][0]["ids"])
    write_mixtures(layout.mixtures, Mixtures(table.ids[:n0], table.names, table.weights[:n0]))
    catalogue = load_catalogue(study.require("domains"))
    first = {"names": record["names"], "rounds": record["rounds"][:1]}
    entry = stages.pick_round(study, layout, catalogue, first, 1, 1)
    assert entry == record["rounds"][1]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"fit": {**STUDY["fit"], "num_members": 0}}, "fit.num_members >= 2"),
        ({"optimize": {}, "fit": {**STUDY["fit"], "targets": []}}, "optimize.target"),
        (
            {"sample": {**STUDY["sample"], "active": {"num_initial": 6}}},
            "sample.active.num_initial",
        ),
    ],
)
def test_plan_refuses_an_active_study_that_cannot_pick(
    tmp_path: Path, change: dict, message: str
) -> None:
    from regmix_plugin.errors import ConfigError
    from regmix_plugin.pipeline import plan_run

    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**STUDY, **change}, sort_keys=False))
    with pytest.raises(ConfigError, match=message):
        plan_run(load_study(config))


@pytest.mark.slow
def test_report_shows_each_round(rounds_run: dict, tmp_path: Path) -> None:
    from regmix_plugin.layout import RunLayout
    from regmix_plugin.report import ReportConfig, write_report

    copy = tmp_path / "run"
    shutil.copytree(rounds_run["run_dir"], copy)
    _, md = write_report(RunLayout(copy), ReportConfig())
    text = md.read_text()
    section = text.split("## Rounds of the active design", 1)[1].split("\n## ", 1)[0]
    for entry in rounds_run["after"]["rounds"]:
        assert f"| {entry['round']} | {len(entry['ids'])}: {entry['ids'][0]}" in section
        if entry["round"] > 0:
            top = max(entry["chosen"].items(), key=lambda kv: kv[1])
            assert f"{top[0]} {top[1]:.3f}" in section
            assert f"{entry['predicted']:.4f}" in section
