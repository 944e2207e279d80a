"""``regmix train-proxy`` end to end: the CLI, a killed run that resumes, and torchrun with gloo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from proxy_corpus import study_dict, train

from regmix_plugin.cli import main
from regmix_plugin.mixtures import mixture_id
from regmix_plugin.proxy.train import CHECKPOINT_FILE, METRICS_FILE
from regmix_plugin.study import load_study
from regmix_plugin.tables import Table, write_table

MIX = {"a": 0.5, "b": 0.25, "c": 0.25}


def write_config(folder: Path, band_corpus: dict[str, str], **proxy) -> Path:
    """A study YAML and ``<run_dir>/mixtures.csv`` holding the row ``m1`` = ``MIX``."""
    study = study_dict(band_corpus, folder, **proxy)
    study["run_dir"] = "run"
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    table = Table("mixture_id", ["m1"], list(MIX), np.array([list(MIX.values())]))
    write_table(folder / "run" / "mixtures.csv", table)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_cli_trains_then_skips(band_corpus, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, band_corpus)
    assert main(["train-proxy", str(config), "--mixture", "m1", "--dry-run"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["out"] == str(tmp_path / "run" / "proxies" / "m1")
    assert [w for _, w in plan["blend"]] == list(MIX.values())
    assert not (tmp_path / "run" / "proxies").exists()

    assert main(["train-proxy", str(config), "--mixture", "m1"]) == 0
    metrics_path = tmp_path / "run" / "proxies" / "m1" / METRICS_FILE
    metrics = json.loads(metrics_path.read_text())
    assert metrics["mixture_id"] == "m1" and metrics["weights"] == MIX
    before = metrics_path.stat().st_mtime_ns
    assert main(["train-proxy", str(config), "--mixture", "m1"]) == 0
    assert metrics_path.stat().st_mtime_ns == before  # complete: nothing to do


def test_cli_weights_file_and_errors(band_corpus, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, band_corpus, num_tokens=32 * 16 * 4)
    weights = tmp_path / "weights.yaml"
    weights.write_text(yaml.safe_dump({"weights": MIX, "predicted": 1.0}))
    out = tmp_path / "w"
    assert main(["train-proxy", str(config), "--weights", str(weights), "--out", str(out)]) == 0
    assert json.loads((out / METRICS_FILE).read_text())["mixture_id"] == mixture_id(MIX)

    assert main(["train-proxy", str(config), "--mixture", "nope"]) == 2
    assert "id 'nope' not found" in capsys.readouterr().err
    weights.write_text(yaml.safe_dump({"weights": {"a": 0.5, "zz": 0.5}}))
    assert main(["train-proxy", str(config), "--weights", str(weights), "--out", str(out)]) == 2
    assert "unknown domain(s) ['zz']" in capsys.readouterr().err


def test_killed_run_resumes_where_it_stopped(band_corpus, tmp_path: Path) -> None:
    proxy = {"num_tokens": 32 * 16 * 80, "checkpoint_interval": 5}
    config = write_config(tmp_path, band_corpus, **proxy)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "regmix_plugin", "train-proxy", str(config), "--mixture", "m1"]
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=_env(), stderr=subprocess.PIPE)
    checkpoint = out / CHECKPOINT_FILE
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert checkpoint.exists(), err.decode()[-2000:]
    assert not (out / METRICS_FILE).exists(), "the run finished before it could be killed"

    study = load_study(config)
    resumed = train(study, MIX, "m1", out)
    assert 5 <= resumed["resumed_from_step"] < resumed["num_steps"]
    whole = train(study, MIX, "m1", tmp_path / "whole")
    assert whole["resumed_from_step"] == 0
    assert resumed["metrics"] == pytest.approx(whole["metrics"], rel=1e-5)
    assert [s for s, _ in resumed["train_loss"]] == [s for s, _ in whole["train_loss"]]
    assert [v for _, v in resumed["train_loss"]] == pytest.approx(
        [v for _, v in whole["train_loss"]], rel=1e-5
    )
    assert resumed["realised_tokens"] == whole["realised_tokens"]


@pytest.mark.slow
def test_torchrun_data_parallel_on_gloo(band_corpus, tmp_path: Path) -> None:
    config = write_config(tmp_path, band_corpus)
    out = tmp_path / "ddp"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "regmix_plugin",
        "train-proxy",
        str(config),
        "--mixture",
        "m1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp = json.loads((out / METRICS_FILE).read_text())
    assert ddp["world_size"] == 2
    assert sum(ddp["realised_tokens"].values()) == ddp["num_tokens_trained"]
    single = train(load_study(config), MIX, "m1", tmp_path / "single")
    assert ddp["realised_tokens"] == single["realised_tokens"]
    # Two ranks of 8 samples average to the same gradient as one rank of 16.
    assert ddp["metrics"] == pytest.approx(single["metrics"], rel=1e-3)
