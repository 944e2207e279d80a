"""The GPU path of a sweep, as far as the CPU can check it (issue 19).

* device slots: GPUs are handed out through the parent's ``CUDA_VISIBLE_DEVICES`` and the GPU
  count, never beyond them, and CPU slots hide every GPU;
* the sweep fingerprint records the resolved device and precision, not ``auto``;
* no proxy rank outlives a SIGKILLed sweep whose proxies run under torchrun (gloo);
* a diverged proxy (NaN / inf metric) is a failed run, with the reason, in ``regmix status``
  and the missing-runs file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, TINY_PROXY, fake_command, plan_sweep, run_sweep

from regmix_plugin.cli import main
from regmix_plugin.errors import ConfigError
from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.config import LocalSettings
from regmix_plugin.sweep.registry import sweep_status


def _slots(environ: dict[str, str], count: int, **local: object) -> list[list[str]]:
    from regmix_plugin.sweep.launchers.local import device_slots

    return device_slots(LocalSettings(**local), environ, count)  # type: ignore[arg-type]


def test_slots_take_the_parents_visible_devices() -> None:
    # Inside CUDA_VISIBLE_DEVICES=4,5 the proxies must land on 4 and 5, not on 0 and 1.
    env = {"CUDA_VISIBLE_DEVICES": "4,5"}
    assert _slots(env, 2, num_concurrent=2, num_devices_per_proxy=1) == [["4"], ["5"]]
    assert _slots(env, 2, num_concurrent=1, num_devices_per_proxy=2) == [["4", "5"]]
    # sweep.local.devices are positions in what the sweep sees
    assert _slots(env, 2, num_devices_per_proxy=1, devices=[1]) == [["5"]]
    uuids = {"CUDA_VISIBLE_DEVICES": "GPU-aa,GPU-bb,GPU-cc"}
    assert _slots(uuids, 3, num_concurrent=3, num_devices_per_proxy=1) == [
        ["GPU-aa"],
        ["GPU-bb"],
        ["GPU-cc"],
    ]
    # without the variable: 0 .. count-1
    assert _slots({}, 8, num_concurrent=4, num_devices_per_proxy=2) == [
        ["0", "1"],
        ["2", "3"],
        ["4", "5"],
        ["6", "7"],
    ]


@pytest.mark.parametrize(
    ("environ", "count", "local", "needle"),
    [
        # a 9th slot on an 8-GPU node must not train silently on the CPU
        ({}, 8, {"num_concurrent": 9, "num_devices_per_proxy": 1}, "needs 9 GPU(s)"),
        ({"CUDA_VISIBLE_DEVICES": "4,5"}, 2, {"num_devices_per_proxy": 1, "devices": [2]}, "[2]"),
        # the variable lists more than CUDA counts (an invalid entry ends CUDA's list)
        (
            {"CUDA_VISIBLE_DEVICES": "0,1,2"},
            1,
            {"num_concurrent": 2, "num_devices_per_proxy": 1},
            "1 GPU",
        ),
        ({}, 0, {"num_devices_per_proxy": 1}, "sees 0 GPU(s)"),
    ],
)
def test_slots_beyond_the_gpus_are_an_error(environ, count, local, needle) -> None:
    with pytest.raises(ConfigError, match=r"sweep\.local") as err:
        _slots(environ, count, **local)
    assert needle in str(err.value)


def test_cpu_slots_hide_the_gpus_and_gpu_slots_fail_without_gpus(make_sweep) -> None:
    from regmix_plugin.sweep.launchers.local import LocalLauncher

    s = make_sweep.write({"launcher": "local", "local": {"num_concurrent": 3}})
    launcher = LocalLauncher(plan_sweep(s.config))
    # num_devices_per_proxy 0: no proxy may land on cuda:0 with device auto
    assert [launcher._env(i)["CUDA_VISIBLE_DEVICES"] for i in range(3)] == ["", "", ""]
    # This machine has no GPU: asking for one per proxy is an error, not a CPU run.
    s.write({"launcher": "local", "local": {"num_devices_per_proxy": 1}})
    if _cuda_count() == 0:
        with pytest.raises(ConfigError, match="num_devices_per_proxy"):
            LocalLauncher(plan_sweep(s.config))


def test_slurm_and_nemo_run_tasks_get_their_gpus_or_none(make_sweep) -> None:
    from regmix_plugin.sweep.launchers.slurm import SlurmLauncher

    s = make_sweep.write({"launcher": "slurm", "slurm": {"num_gpus_per_task": 8}})
    plan = plan_sweep(s.config)
    script = SlurmLauncher(plan).script(plan, s.sweep_dir / "slurm" / "array-0.ids", 2)
    # one CPU per rank, not one per task; Slurm itself sets the task's CUDA_VISIBLE_DEVICES
    assert "#SBATCH --cpus-per-task=8" in script and "--gres=gpu:8" in script
    assert "CUDA_VISIBLE_DEVICES" not in script
    s.write({"launcher": "slurm", "num_threads_per_proxy": 3})
    plan = plan_sweep(s.config)
    script = SlurmLauncher(plan).script(plan, s.sweep_dir / "slurm" / "array-0.ids", 2)
    assert "#SBATCH --cpus-per-task=3" in script
    assert "export CUDA_VISIBLE_DEVICES=\n" in script  # no GPU: the proxy must not find one
    s.write({"launcher": "slurm", "slurm": {"num_cpus_per_task": 5, "num_gpus_per_task": 2}})
    plan = plan_sweep(s.config)
    assert "--cpus-per-task=5" in SlurmLauncher(plan).script(plan, s.sweep_dir / "x.ids", 1)

    pytest.importorskip("nemo_run")
    from regmix_plugin.sweep.launchers.nemo_run import NemoRunLauncher

    s.write({"launcher": "nemo_run", "nemo_run": {"num_concurrent": 2}})
    plan = plan_sweep(s.config)
    scripts = NemoRunLauncher(plan).scripts(plan, s.ids)
    # every lane of the local executor used to get GPU 0; with no GPUs per lane, none
    assert [line for _, text in scripts for line in text.splitlines() if "CUDA" in line] == [
        "export CUDA_VISIBLE_DEVICES=''",
        "export CUDA_VISIBLE_DEVICES=''",
    ]


def _cuda_count() -> int:
    import torch

    return int(torch.cuda.device_count())


def test_fingerprint_records_the_resolved_device_and_precision(make_sweep) -> None:
    s = make_sweep.write({"launcher": "local"})
    cpu = plan_sweep(s.config)
    assert cpu.description["placement"] == {"device": "cpu", "precision": "fp32"}
    s.write({"launcher": "slurm", "slurm": {"num_gpus_per_task": 1}})
    gpu = plan_sweep(s.config)
    assert gpu.description["placement"] == {"device": "cuda", "precision": "bf16"}
    assert gpu.fingerprint != cpu.fingerprint  # CPU and GPU results never share a sweep
    s.write(
        {"launcher": "slurm", "slurm": {"num_gpus_per_task": 1}},
        proxy={**TINY_PROXY, "precision": "fp32"},
    )
    assert plan_sweep(s.config).description["placement"] == {"device": "cuda", "precision": "fp32"}
    s.write({"launcher": "local"}, proxy={**TINY_PROXY, "device": "cuda"})
    with pytest.raises(ConfigError, match=r"proxy\.device is 'cuda'"):
        plan_sweep(s.config)


# ---------------------------------------------------------------- orphans
def _children() -> dict[int, int]:
    """pid -> parent pid of every process."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        out[int(stat.parent.name)] = int(fields[1])
    return out


def _descendants(root: int) -> set[int]:
    parents = _children()
    found, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parents.items() if pp in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_no_rank_outlives_a_sigkilled_sweep_under_torchrun(make_sweep) -> None:
    torchrun = (
        "{python} -m torch.distributed.run --standalone --nproc-per-node=2 -m regmix_plugin "
        "train-proxy {config} --mixture {mixture_id} --mixtures {mixtures} --out {run_dir}"
    )
    proxy = {**TINY_PROXY, "num_tokens": 32 * 16 * 5000, "log_interval": 1}
    s = make_sweep.write(
        {"launcher": "local", "command": torchrun, "poll_interval_s": 0.2},
        num_mixtures=1,
        proxy=proxy,
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "regmix_plugin", "sweep", str(s.config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    log = s.sweep_dir / "runs" / s.ids[0] / "train.log"
    deadline = time.monotonic() + 240
    try:
        # both ranks are training once the loss curve is logged
        while time.monotonic() < deadline and "loss" not in (
            log.read_text() if log.is_file() else ""
        ):
            assert sweep.poll() is None, "the sweep ended before its proxy trained"
            time.sleep(0.2)
        assert "loss" in log.read_text(), "the proxy did not start training in 240 s"
        tree = _descendants(sweep.pid)
        ranks = [p for p in tree if "LOCAL_RANK=" in _environ(p)]
        assert len(ranks) == 2, f"expected 2 ranks among {sorted(tree)}"
    finally:
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
    end = time.monotonic() + 20
    while any(_alive(p) for p in tree) and time.monotonic() < end:
        time.sleep(0.1)
    survivors = [p for p in tree if _alive(p)]
    for pid in survivors:  # do not leave them training on the shared machine
        os.kill(pid, signal.SIGKILL)
    assert survivors == [], f"{len(survivors)} process(es) outlived the sweep (ranks: {ranks})"


def _environ(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").replace("\0", " ")
    except OSError:
        return ""


# ---------------------------------------------------------------- diverged proxies
def test_a_diverged_proxy_is_a_failed_run_with_the_reason(make_sweep, capsys) -> None:
    s = make_sweep.write(
        {
            "launcher": "local",
            "command": fake_command() + " --diverge",
            "poll_interval_s": 0.2,
            "num_retries": 0,
        },
        num_mixtures=2,
    )
    result = run_sweep(s.config)
    assert not result.ok
    status = sweep_status(s.sweep_dir)
    assert status.counts["failed"] == 2 and status.counts["done"] == 0
    for rec in status.records:
        assert rec.error.startswith("diverged:"), rec.error
    # NaN and inf are both named
    errors = " ".join(r.error for r in status.records)
    assert "nan" in errors and "inf" in errors
    assert main(["status", str(s.sweep_dir)]) != 0
    shown = capsys.readouterr().out
    assert "diverged" in shown
    collected = collect_runs(s.sweep_dir)
    assert set(collected.missing) == set(s.ids)
    assert all("diverged" in why for why in collected.missing.values())
    for mid in s.ids:  # no DONE: the results table never holds the NaN / inf
        assert not (s.sweep_dir / "runs" / mid / "DONE").exists()
        assert json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())[-1][
            "error"
        ].startswith("diverged:")


def test_a_real_proxy_that_diverges_is_failed_with_its_reason(make_sweep) -> None:
    proxy = {**TINY_PROXY, "lr": 1e30, "grad_clip": 0.0}
    s = make_sweep.write(
        {"launcher": "local", "poll_interval_s": 0.2, "num_retries": 0}, num_mixtures=1, proxy=proxy
    )
    assert not run_sweep(s.config).ok
    (rec,) = sweep_status(s.sweep_dir).records
    assert rec.state == "failed"
    assert rec.error.startswith("the proxy exited with code 2: diverged:"), rec.error
    assert "proxy.lr" in rec.error
    folder = s.sweep_dir / "runs" / s.ids[0]
    assert not (folder / "cache").exists()  # no megatron cache files left in its --out
    assert "diverged" in collect_runs(s.sweep_dir).missing[s.ids[0]]
