"""``regmix run`` end to end on a tiny planted-optimum study: killed mid-run, resumed, reported.

One module-scoped run (real synthetic .bin/.idx files, real proxies trained by the local launcher,
real LightGBM) is shared by the tests: it is SIGKILLed once while the sweep is training, then
rerun to completion. The report it writes is opened in a real headless Chromium.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from _requirements import require_or_skip

from regmix_plugin.errors import ConfigError
from regmix_plugin.pipeline import STAGES, plan_run, run_pipeline
from regmix_plugin.study import load_study

pytestmark = pytest.mark.slow

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
        "num_target_tokens": 100000,
        "entries": [{"name": n, "prefixes": [f"data/{n}_text_document"]} for n in "abc"],
    },
    "sample": {
        "num_mixtures": 8,
        "seed": 0,
        "temperature": 0.5,
        "grid": 0.01,
        "min_weight": 0.01,
        "num_anchor_mixtures": 2,
        "num_seeds": 2,
    },
    "proxy": {
        "preset": "tiny",
        "vocab_size": 16,
        "seq_length": 8,
        "num_tokens": 16384,
        "micro_batch_size": 64,
        "global_batch_size": 64,
        "lr": 0.005,
        "split": "80,20,0",
        "num_eval_tokens": 1024,
        "targets": {"target": ["data/target_text_document"]},
        "num_threads": 1,
        "checkpoint_interval": 8,
    },
    "sweep": {"launcher": "local", "local": {"num_concurrent": 2}},
    "fit": {"targets": ["target_loss/target"], "num_folds": 4},
    "optimize": {"target": "target_loss/target", "num_candidates": 20000},
    "emit": {"split": "80,20,0"},
    "evaluate": {
        "target": "target_loss/target",
        "baselines": ["uniform", "best_proxy"],
        "num_concurrent": 2,  # worker processes; transfer trains in the run's own process
    },
    "transfer": {
        "target": "target_loss/target",
        "proxy": {"num_tokens": 32768, "model": {"hidden_size": 96}},
        "num_mixtures": 4,
        "num_resamples": 500,
    },
}
#: Sweep runs: 8 mixtures, 2 of them trained with a second seed.
NUM_RUNS = 8 + 2
#: Evaluation: chosen, uniform, best_proxy and the planted weights, 3 seeds each (the default).
EVALUATED = ("chosen", "uniform", "best_proxy", "planted")


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


@pytest.fixture(scope="module")
def study_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("study")
    config = root / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    run_dir = root / "run"

    # First attempt: killed with SIGKILL once at least one proxy has finished.
    proc = _regmix("run", str(config), cwd=root)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any((run_dir / "sweep" / "runs").glob("*/DONE")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before the kill:\n{proc.communicate()[0][-3000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = {
        p.parent.name: p.stat().st_mtime_ns for p in (run_dir / "sweep" / "runs").glob("*/DONE")
    }
    # Orphaned proxies of the killed sweep die with it (the worker holds their lifetime).
    time.sleep(1.0)

    proc = _regmix("run", str(config), cwd=root)
    out, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-4000:]
    again = _regmix("run", str(config), cwd=root)
    out_again, _ = again.communicate(timeout=300)
    assert again.returncode == 0, out_again[-4000:]
    return {
        "root": root,
        "config": config,
        "run_dir": run_dir,
        "done_before": done_before,
        "output": out,
        "output_again": out_again,
    }


def test_every_stage_leaves_its_artifact(study_run: dict) -> None:
    run = study_run["run_dir"]
    for name in (
        "mixtures.csv",
        "results.csv",
        "weights.yaml",
        "evaluation.json",
        "transfer.json",
        "report.html",
    ):
        assert (run / name).is_file(), name
    assert (run / "model" / "metadata.json").is_file()
    assert json.loads((run / "blend" / "manifest.json").read_text())["files"]
    markers = {p.stem for p in (run / "stages").glob("*.json")}
    assert markers == set(STAGES)
    weights = yaml.safe_load((run / "weights.yaml").read_text())["weights"]
    assert set(weights) == {"a", "b", "c"} and abs(sum(weights.values()) - 1) < 1e-9


def test_console_shows_stages_and_progress_not_library_chatter(study_run: dict) -> None:
    out = study_run["output"]
    lines = out.splitlines()
    # One line per stage with its time; a progress line per finished proxy (not a tty here).
    for stage in STAGES:
        if stage != "data":
            assert any(
                re.match(rf"^{stage}\s+(done in [0-9.]+ s|done before, skipped)$", ln)
                for ln in lines
            ), stage
    assert any(ln.startswith("sweep: [") and "done" in ln for ln in lines)
    assert sum(ln.startswith("evaluate: ") for ln in lines) == 3 * len(EVALUATED)
    assert sum(ln.startswith("transfer: ") for ln in lines) == 1 + 4 + 1  # small chosen, 5 large
    assert any(ln.startswith("  chosen vs uniform") for ln in lines)
    assert any(ln.startswith("rank transfer of target_loss/target over 5 mixtures") for ln in lines)
    # megatron-core's INFO lines, the Apex/TE fallbacks and every proxy step go to the log file.
    assert not [ln for ln in lines if " INFO " in ln or "Warning" in ln or "step " in ln], out
    log = (study_run["run_dir"] / "logs" / "regmix.log").read_text()
    assert "INFO megatron.core" in log and "stage fit: done in" in log


def test_kill_and_rerun_keeps_finished_proxies(study_run: dict) -> None:
    runs = study_run["run_dir"] / "sweep" / "runs"
    assert study_run["done_before"], "the kill came before any proxy finished"
    for mixture_id, mtime in study_run["done_before"].items():
        assert (runs / mixture_id / "DONE").stat().st_mtime_ns == mtime, f"{mixture_id} retrained"
    assert len(list(runs.glob("*/DONE"))) == NUM_RUNS


def test_rerun_of_a_finished_run_skips_every_stage(study_run: dict) -> None:
    out = study_run["output_again"]
    assert "stage times" not in out  # nothing ran
    for stage in STAGES:
        assert re.search(rf"^{stage}\s+done before, skipped$", out, re.MULTILINE), stage


def _metric(path: Path) -> tuple[float, int]:
    data = json.loads(path.read_text())
    return float(data["metrics"]["target_loss/target"]), int(data["config"]["seed"])


def test_replicate_runs_are_trained_with_their_own_seed(study_run: dict) -> None:
    """Each anchor mixture's second run has its own folder, row and seed (proxy.seed + 1)."""
    run = study_run["run_dir"]
    seeds = json.loads((run / "mixtures.csv.seeds.json").read_text())
    mixtures = list(csv.reader((run / "mixtures.csv").open()))
    ids = [row[0] for row in mixtures[1:]]
    assert len(ids) == NUM_RUNS and len(seeds["groups"]) == 2
    results = {row[0]: row for row in csv.reader((run / "results.csv").open())}
    assert set(results) - {"mixture_id"} == set(ids)  # one row per run
    for base, replicate in seeds["groups"]:
        assert replicate == f"{base}.s1" and seeds["seed_offsets"][replicate] == 1
        assert mixtures[1 + ids.index(base)][1:] == mixtures[1 + ids.index(replicate)][1:]
        loss_base, seed_base = _metric(run / "sweep" / "runs" / base / "metrics.json")
        loss_rep, seed_rep = _metric(run / "sweep" / "runs" / replicate / "metrics.json")
        assert (seed_base, seed_rep) == (1234, 1235)
        assert loss_base != loss_rep  # another initialisation and data order


def test_evaluation_statistics_match_the_per_seed_runs(study_run: dict) -> None:
    """Mean, std and the paired 95% t-interval of every compared mixture, recomputed here from
    the per-seed metrics.json files."""
    from scipy import stats

    run = study_run["run_dir"]
    ev = json.loads((run / "evaluation.json").read_text())
    seeds = [1234 + 1000 + k for k in range(3)]
    assert ev["seeds"] == seeds and set(ev["runs"]) == set(EVALUATED)
    losses = {}
    for label in EVALUATED:
        values = []
        for seed in seeds:
            loss, used = _metric(run / "evaluate" / label / f"seed-{seed}" / "metrics.json")
            assert used == seed
            values.append(loss)
        losses[label] = np.array(values)
        r = ev["runs"][label]
        assert r["target_losses"] == pytest.approx(values)
        assert r["mean"] == pytest.approx(np.mean(values))
        assert r["std"] == pytest.approx(np.std(values, ddof=1))
    t975 = stats.t.ppf(0.975, 2)
    verdicts = {}
    for label in EVALUATED[1:]:
        d = losses[label] - losses["chosen"]
        half = t975 * np.std(d, ddof=1) / np.sqrt(3)
        c = ev["comparisons"][label]
        assert c["mean_difference"] == pytest.approx(d.mean())
        assert (c["lo"], c["hi"]) == (
            pytest.approx(d.mean() - half),
            pytest.approx(d.mean() + half),
        )
        lo, hi = d.mean() - half, d.mean() + half
        verdicts[label] = "beats" if lo > 0 else "loses" if hi < 0 else "within noise"
        assert c["verdict"] == verdicts[label]
    assert ev["chosen_beats_all"] == (verdicts["uniform"] == verdicts["best_proxy"] == "beats")
    # The planted weights are the synthetic section's; best_proxy is the sweep mixture with the
    # lowest measured target, a replicated mixture counted by the mean of its runs.
    assert ev["runs"]["planted"]["weights"] == STUDY["synthetic"]["hidden_weights"]
    groups = json.loads((run / "mixtures.csv.seeds.json").read_text())["groups"]
    results = list(csv.reader((run / "results.csv").open()))
    column = results[0].index("target_loss/target")
    value = {row[0]: float(row[column]) for row in results[1:]}
    by_mixture = {g[0]: np.mean([value[i] for i in g]) for g in groups}
    grouped = {i for g in groups for i in g}
    by_mixture.update({i: v for i, v in value.items() if i not in grouped})
    assert ev["runs"]["best_proxy"]["mixture_id"] == min(by_mixture, key=by_mixture.__getitem__)


def test_rank_transfer_recomputed_from_both_scales(study_run: dict) -> None:
    from scipy.stats import spearmanr

    from regmix_plugin.regression import load_model

    run = study_run["run_dir"]
    record = json.loads((run / "transfer.json").read_text())
    labels = list(record["mixtures"])
    subset = labels[:-1]
    assert labels[-1] == "chosen" and len(subset) == 4
    results = list(csv.reader((run / "results.csv").open()))
    column = results[0].index("target_loss/target")
    value = {row[0]: float(row[column]) for row in results[1:]}
    small = [value[i] for i in subset] + [_metric(run / "transfer/small/chosen/metrics.json")[0]]
    large = [_metric(run / "transfer" / "large" / k / "metrics.json")[0] for k in labels]
    assert [record["mixtures"][k]["small"] for k in labels] == pytest.approx(small)
    assert [record["mixtures"][k]["large"] for k in labels] == pytest.approx(large)
    assert record["spearman_rho"] == pytest.approx(spearmanr(small, large).statistic)
    lo, hi = record["interval"]["lo"], record["interval"]["hi"]
    assert -1 <= lo <= hi <= 1
    assert record["proxies_too_small"] == (lo < 0.8)
    rank = record["chosen_rank"]
    assert rank["small"] == 1 + sum(v < small[-1] for v in small)
    assert rank["large"] == 1 + sum(v < large[-1] for v in large)
    assert (
        json.loads((run / "transfer/large/chosen/metrics.json").read_text())["config"]["num_tokens"]
        == 32768
    )
    # The subset spans the predicted range of the sweep's mixtures (replicate runs left out).
    seeds = json.loads((run / "mixtures.csv.seeds.json").read_text())["seed_offsets"]
    mixtures = list(csv.reader((run / "mixtures.csv").open()))
    base = [row for row in mixtures[1:] if row[0] not in seeds]
    model = load_model(run / "model")
    order = [mixtures[0].index(d) for d in model.domains]
    x = np.array([[float(row[j]) for j in order] for row in base])
    predicted = dict(zip([r[0] for r in base], model.predict(x, "target_loss/target"), strict=True))
    ends = {min(predicted, key=predicted.__getitem__), max(predicted, key=predicted.__getitem__)}
    assert ends <= set(subset) and not set(subset) & set(seeds)


def test_dry_run_prints_plan_and_writes_nothing(study_run: dict, tmp_path: Path) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({**STUDY, "run_dir": "fresh"}, sort_keys=False))
    assert set(plan_run(load_study(config)).states.values()) == {"would run"}
    proc = _regmix("run", str(config), "--dry-run", cwd=tmp_path)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out[-3000:]
    assert "# stages" in out and "would run" in out
    assert not (tmp_path / "fresh").exists()
    states = plan_run(load_study(study_run["config"])).states
    assert set(states.values()) == {"done, would skip"}
    # The resolved config beside the outputs has every default filled in.
    resolved = yaml.safe_load((study_run["run_dir"] / "config.resolved.yaml").read_text())
    assert resolved["proxy"]["num_tokens"] == STUDY["proxy"]["num_tokens"]
    assert resolved["proxy"]["schedule"] == "constant"  # a default the study does not set
    assert resolved["optimize"]["top_k"] == 100


def test_stage_range_is_checked(study_run: dict) -> None:
    with pytest.raises(ConfigError, match="comes after"):
        run_pipeline(load_study(study_run["config"]), start="fit", stop="sample")
    outcome = run_pipeline(load_study(study_run["config"]), start="fit", stop="optimize")
    assert outcome == {"fit": "skipped", "optimize": "skipped"}


def test_report_renders_in_headless_chromium(study_run: dict) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    require_or_skip(browser is not None, "chromium is not installed (apt-get install chromium)")
    assert browser is not None
    html = study_run["run_dir"] / "report.html"
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    body = re.search(r"<body([^>]*)>", proc.stdout)
    assert body, proc.stderr[-2000:]
    total = re.search(r'data-images-total="(\d+)"', body.group(1))
    rendered = re.search(r'data-images-rendered="(\d+)"', body.group(1))
    assert total and rendered, body.group(0)
    assert int(total.group(1)) >= 4  # design, CV, importance, weights
    assert rendered.group(1) == total.group(1)
    md = (study_run["run_dir"] / "report.md").read_text()
    for heading in ("Mixture design", "Regression", "Chosen mixture", "Implied epochs", "Blend"):
        assert heading in md
    # It leads with the answer: the mixture, the measured evaluation, the rank transfer.
    answer = md.split("## ")[1]
    assert answer.startswith("The answer") and "Recommended mixture: " in answer
    assert "Rank transfer to the larger proxy: Spearman rho" in answer
    assert "with 3 seed(s), mean ± std" in answer
