"""The Slurm launcher against a real single-node Slurm cluster started by the fixture."""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path

import pytest
from sweep_helpers import DOMAINS, fake_command, run_sweep

from regmix_plugin.cli import main
from regmix_plugin.errors import LaunchError
from regmix_plugin.layout import TIMINGS_FILE
from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.launchers.slurm import JOBS_FILE
from regmix_plugin.sweep.registry import sweep_status

pytestmark = pytest.mark.requires_slurm


def _slurm(**over):
    section = {
        "launcher": "slurm",
        "poll_interval_s": 0.5,
        "num_retries": 1,
        "slurm": {"time": "00:10:00", "num_array_concurrent": 3, "job_name": "regmix-test"},
    }
    section.update(over)
    return section


@pytest.mark.slow
def _attempt_job_ids(run: Path) -> list[str]:
    """The Slurm job id of each attempt of a run, in order, from its timings log (where, when
    and as which job an attempt ran; ``attempts.json`` holds no such thing)."""
    lines = (run / TIMINGS_FILE).read_text().splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    return [str(e["job_id"]) for e in events if e["event"] == "attempt_start"]


def test_job_array_of_real_proxies(slurm_cluster, make_sweep) -> None:
    s = make_sweep.write(_slurm(), num_mixtures=2)
    result = run_sweep(s.config)
    assert result.ok, [r.as_dict() for r in result.status.records]
    jobs = json.loads((s.sweep_dir / "slurm" / JOBS_FILE).read_text())
    assert len(jobs) == 1 and jobs[0]["ids"] == s.ids and jobs[0]["job_id"].isdigit()
    script = (s.sweep_dir / "slurm" / "array-0.sh").read_text()
    assert "#SBATCH --array=0-1%3" in script and "#SBATCH --time=00:10:00" in script
    for i, mid in enumerate(s.ids):
        job_ids = _attempt_job_ids(s.sweep_dir / "runs" / mid)
        assert job_ids[-1] == f"{jobs[0]['job_id']}_{i}"  # ran as that array task
    table = collect_runs(s.sweep_dir).table
    assert table.columns == [f"val_loss/{d}" for d in DOMAINS]
    assert all(math.isfinite(v) for v in table.values.ravel())


def test_failed_tasks_are_resubmitted_in_a_new_array(slurm_cluster, make_sweep) -> None:
    s = make_sweep.write(_slurm(command=fake_command(steps=2, fail_times=1)), num_mixtures=3)
    result = run_sweep(s.config)
    assert result.ok, [r.as_dict() for r in result.status.records]
    jobs = json.loads((s.sweep_dir / "slurm" / JOBS_FILE).read_text())
    assert [len(j["ids"]) for j in jobs] == [3, 3]  # every task failed once: one resubmission
    for mid in s.ids:
        attempts = json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())
        assert [a["exit_code"] for a in attempts] == [3, 0]
        job_ids = _attempt_job_ids(s.sweep_dir / "runs" / mid)
        assert job_ids[0].split("_")[0] == jobs[0]["job_id"]
        assert job_ids[1].split("_")[0] == jobs[1]["job_id"]


def test_no_wait_submits_and_a_rerun_adopts_the_queued_array(slurm_cluster, make_sweep) -> None:
    s = make_sweep.write(
        _slurm(command=fake_command(steps=6, step_s=0.3), wait=False), num_mixtures=2
    )
    first = run_sweep(s.config)
    assert sorted(first.launched) == sorted(s.ids) and not first.status.finished
    # status shows the runs as pending (queued) or running, with their job ids
    assert main(["status", str(s.sweep_dir), "--all"]) == 1
    s.write(_slurm(command=fake_command(steps=6, step_s=0.3)), num_mixtures=2)  # wait: true
    second = run_sweep(s.config)
    assert second.ok and second.launched == []  # adopted, not submitted twice
    assert len(json.loads((s.sweep_dir / "slurm" / JOBS_FILE).read_text())) == 1
    assert all(s.starts(m) == 1 for m in s.ids)


def test_sbatch_rejecting_the_script_is_a_clear_error(slurm_cluster, make_sweep) -> None:
    s = make_sweep.write(_slurm(slurm={"partition": "no-such-partition"}), num_mixtures=1)
    with pytest.raises(LaunchError) as info:
        run_sweep(s.config)
    msg = str(info.value)
    assert "sbatch rejected" in msg and "partition" in msg and "sweep.slurm" in msg
    assert sweep_status(s.sweep_dir).counts["pending"] == 1  # nothing half-launched


def test_missing_sbatch_is_a_clear_error(make_sweep, tmp_path) -> None:
    # runs without a cluster: sbatch is looked up before anything is submitted
    s = make_sweep.write(_slurm(slurm={"sbatch": str(tmp_path / "no-sbatch")}), num_mixtures=1)
    with pytest.raises(LaunchError, match="sbatch not found") as info:
        run_sweep(s.config)
    assert "sweep.slurm.sbatch" in str(info.value)
    assert main(["sweep", str(s.config)]) == 2


def test_sbatch_that_fails_is_reported_with_its_output(make_sweep, tmp_path) -> None:
    fake = tmp_path / "sbatch"
    fake.write_text(
        "#!/bin/sh\necho 'sbatch: error: Batch job submission failed: QOS' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    s = make_sweep.write(_slurm(slurm={"sbatch": str(fake)}), num_mixtures=1)
    with pytest.raises(LaunchError, match=r"exit code 1.*Batch job submission failed"):
        run_sweep(s.config)


def test_dry_run_prints_the_sbatch_script(make_sweep, capsys) -> None:
    s = make_sweep.write(
        _slurm(
            slurm={
                "partition": "gpu",
                "account": "proj",
                "num_gpus_per_task": 2,
                "extra_sbatch_lines": ["--qos=low"],
                "setup_lines": ["module load cuda"],
            }
        ),
        num_mixtures=2,
    )
    assert main(["sweep", str(s.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for needle in (
        "#SBATCH --array=0-1",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=proj",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --qos=low",
        "module load cuda",
        "--task-file",
        "torch.distributed.run",  # two GPUs per proxy: torchrun
    ):
        assert needle in out, needle
    assert not s.sweep_dir.exists()
