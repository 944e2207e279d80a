"""``regmix run`` end to end on a tiny planted-optimum study: killed mid-run, resumed, reported.

One module-scoped run (real synthetic .bin/.idx files, real proxies trained by the local launcher,
real LightGBM) is shared by the tests: it is SIGKILLed once while the sweep is training, then
rerun to completion. The report it writes is opened in a real headless Chromium.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

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
    "sample": {"num_mixtures": 8, "seed": 0, "temperature": 0.5, "grid": 0.01, "min_weight": 0.01},
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
    "evaluate": {"target": "target_loss/target", "baselines": ["uniform", "best_proxy"]},
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
    for name in ("mixtures.csv", "results.csv", "weights.yaml", "evaluation.json", "report.html"):
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
    assert sum(ln.startswith("evaluate: ") for ln in lines) == 2  # chosen and uniform
    # megatron-core's INFO lines, the Apex/TE fallbacks and every proxy step go to the log file.
    assert not [ln for ln in lines if " INFO " in ln or "Warning" in ln or "step " in ln], out
    log = (study_run["run_dir"] / "logs" / "regmix.log").read_text()
    assert "INFO megatron.core" in log and "stage fit: done in" in log


def test_kill_and_rerun_keeps_finished_proxies(study_run: dict) -> None:
    runs = study_run["run_dir"] / "sweep" / "runs"
    assert study_run["done_before"], "the kill came before any proxy finished"
    for mixture_id, mtime in study_run["done_before"].items():
        assert (runs / mixture_id / "DONE").stat().st_mtime_ns == mtime, f"{mixture_id} retrained"
    assert len(list(runs.glob("*/DONE"))) == STUDY["sample"]["num_mixtures"]


def test_rerun_of_a_finished_run_skips_every_stage(study_run: dict) -> None:
    out = study_run["output_again"]
    assert "stage times" not in out  # nothing ran
    for stage in STAGES:
        assert re.search(rf"^{stage}\s+done before, skipped$", out, re.MULTILINE), stage


def test_evaluation_compares_chosen_with_baselines(study_run: dict) -> None:
    ev = json.loads((study_run["run_dir"] / "evaluation.json").read_text())
    assert set(ev["runs"]) == {"chosen", "uniform", "best_proxy"}
    for r in ev["runs"].values():
        assert r["target_loss"] > 0 and 0 <= r["l1_to_planted"] <= 2
    assert ev["chosen_beats_all"] == all(
        ev["runs"]["chosen"]["target_loss"] < r["target_loss"]
        for k, r in ev["runs"].items()
        if k != "chosen"
    )


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
