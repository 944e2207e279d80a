"""The NeMo-Run launcher with NeMo-Run's own LocalExecutor (``nemo-run`` from PyPI)."""

from __future__ import annotations

import json

import pytest
from sweep_helpers import fake_command, run_sweep

from regmix_plugin.cli import main
from regmix_plugin.sweep.registry import sweep_status


def _nemo(**over):
    section = {
        "launcher": "nemo_run",
        "command": fake_command(steps=3),
        "poll_interval_s": 0.2,
        "num_retries": 1,
        "nemo_run": {"executor": "local", "num_concurrent": 2, "experiment_name": "regmix-test"},
    }
    section.update(over)
    return section


@pytest.fixture(autouse=True)
def _nemo_run_installed() -> None:
    from _requirements import require_or_skip

    try:
        import nemo_run  # noqa: F401
    except ImportError as exc:
        require_or_skip(False, f"nemo-run is not installed: {exc}")


def test_experiment_of_script_tasks_runs_every_mixture(make_sweep) -> None:
    s = make_sweep.write(_nemo(command=fake_command(steps=3, fail_times=1)), num_mixtures=3)
    result = run_sweep(s.config)
    assert result.ok, [r.as_dict() for r in result.status.records]
    # two rounds (experiments): every run failed once, then succeeded on the retry
    experiments = sorted((s.sweep_dir / "nemo_run" / "experiments" / "regmix-test").iterdir())
    assert len(experiments) == 2
    lanes = sorted(p.name for p in experiments[0].iterdir() if p.name.startswith("lane-"))
    assert lanes == ["lane-0", "lane-1"]  # two lanes: at most two proxies at once
    for mid in s.ids:
        attempts = json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())
        assert [a["exit_code"] for a in attempts] == [3, 0]
    assert sweep_status(s.sweep_dir).finished
    # rerun: nothing left to launch, no new experiment
    again = run_sweep(s.config)
    assert again.ok and again.launched == []
    assert len(list((s.sweep_dir / "nemo_run" / "experiments" / "regmix-test").iterdir())) == 2


def test_dry_run_lists_the_tasks(make_sweep, capsys) -> None:
    s = make_sweep.write(_nemo(), num_mixtures=3)
    assert main(["sweep", str(s.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "task lane-0" in out and "task lane-1" in out and "task lane-2" not in out
    assert all(mid in out for mid in s.ids)
    assert not s.sweep_dir.exists()
