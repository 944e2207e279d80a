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
    experiments = sorted((s.sweep_dir / "nemorun" / "experiments" / "regmix-test").iterdir())
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
    assert len(list((s.sweep_dir / "nemorun" / "experiments" / "regmix-test").iterdir())) == 2


def test_dry_run_lists_the_tasks(make_sweep, capsys) -> None:
    s = make_sweep.write(_nemo(), num_mixtures=3)
    assert main(["sweep", str(s.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "task lane-0" in out and "task lane-1" in out and "task lane-2" not in out
    assert all(mid in out for mid in s.ids)
    assert not s.sweep_dir.exists()


# -- NeMo-Run's SlurmExecutor on a real cluster with accounting ------------------------------------


@pytest.fixture(scope="module")
def slurm_with_accounting(local_slurm):
    """A real single-node Slurm cluster with slurmdbd + MariaDB (``sacct`` answers).

    Started by the project's own ``tools/local_slurm.py --accounting``; NeMo-Run's
    SlurmExecutor reads job states only from ``sacct``.
    """
    import os
    import tempfile
    from pathlib import Path

    from _requirements import require_or_skip

    problems = local_slurm.missing_requirements(accounting=True)
    require_or_skip(not problems, f"no local Slurm cluster with accounting possible: {problems}")
    prefix = Path(tempfile.mkdtemp(prefix="regmix-test-slurmdbd-"))
    prefix.chmod(0o755)
    env = local_slurm.start(prefix, cpus=4, accounting=True)
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = env["SLURM_CONF"]
    try:
        yield env
    finally:
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
        local_slurm.stop(prefix, purge=True)


def _nemo_slurm(**over):
    return _nemo(
        nemo_run={
            "executor": "slurm",
            "account": "regmix",
            "time": "00:10:00",
            "experiment_name": "regmix-slurm-test",
        },
        **over,
    )


@pytest.mark.slow
@pytest.mark.requires_slurm
def test_slurm_executor_sweep_survives_a_kill_and_resumes(
    slurm_with_accounting, make_sweep
) -> None:
    import signal
    import subprocess
    import sys
    import time

    s = make_sweep.write(
        _nemo_slurm(command=fake_command(steps=8, step_s=0.5), poll_interval_s=0.5),
        num_mixtures=3,
    )
    sacct = subprocess.run(["sacct", "-n", "-X"], capture_output=True, text=True, check=False)
    assert sacct.returncode == 0, sacct.stderr  # accounting answers

    cmd = [sys.executable, "-m", "regmix_plugin", "sweep", str(s.config)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # kill `regmix sweep` once a proxy is training under Slurm
    end = time.monotonic() + 180
    while time.monotonic() < end and proc.poll() is None:
        if any(s.starts(m) for m in s.ids):
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not sweep_status(s.sweep_dir).finished

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    status = sweep_status(s.sweep_dir)
    assert status.finished, status.counts
    for mid in s.ids:
        metrics = json.loads((s.sweep_dir / "runs" / mid / "metrics.json").read_text())
        assert metrics["num_steps"] == 8
        attempts = json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())
        assert attempts[-1]["exit_code"] == 0
    # every run went through Slurm: sacct knows a job per task of the experiments
    jobs = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobName,State"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert any("COMPLETED" in j for j in jobs), jobs


def test_slurm_task_paths_with_a_nemo_run_folder_are_refused(make_sweep, tmp_path, capsys) -> None:
    # NeMo-Run's SlurmExecutor rewrites every "/nemo_run" in its sbatch script.
    from sweep_helpers import SweepFixture

    s = SweepFixture(tmp_path / "nemo_run_studies", make_sweep.prefixes)
    s.root.mkdir()
    s.write(_nemo_slurm(), num_mixtures=1)
    assert main(["sweep", str(s.config), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "'/nemo_run'" in err and "sweep.launcher: slurm" in err
