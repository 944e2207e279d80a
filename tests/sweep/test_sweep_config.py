"""The ``sweep:`` section: defaults, and bad values rejected with the setting to change."""

from __future__ import annotations

import pytest
import yaml

from regmix_plugin.cli import main
from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError
from regmix_plugin.sweep.config import DEFAULT_COMMAND, SweepConfig
from regmix_plugin.sweep.runner import render_command


def _build(section: dict) -> SweepConfig:
    return from_dict(SweepConfig, section, "sweep")


def test_defaults_run_train_proxy_locally() -> None:
    cfg = _build({})
    assert cfg.launcher == "local" and cfg.command == DEFAULT_COMMAND and cfg.wait
    argv = render_command(
        cfg,
        {
            "config": "/s/study 1.yaml",
            "mixture_id": "abc",
            "mixtures": "/r/m.csv",
            "run_dir": "/r/runs/abc",
            "blend": "/r/runs/abc/blend.yaml",
            "threads": "1",
        },
    )
    assert argv[1:] == [
        "-m", "regmix_plugin", "train-proxy", "/s/study 1.yaml", "--mixture", "abc",
        "--mixtures", "/r/m.csv", "--out", "/r/runs/abc",
    ]  # fmt: skip


def test_torchrun_when_a_proxy_spans_several_devices() -> None:
    cfg = _build({"local": {"num_devices_per_proxy": 2, "devices": [0, 1, 2, 3]}})
    assert cfg.local.effective_concurrency == 1  # num_concurrent 1, devices allow 2
    argv = render_command(cfg, dict.fromkeys(("config", "mixture_id", "mixtures", "run_dir",
                                               "blend", "threads"), "x"))  # fmt: skip
    assert argv[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]


@pytest.mark.parametrize(
    ("section", "needle"),
    [
        ({"launcher": "kubernetes"}, "choose one of ['local', 'nemo_run', 'slurm']"),
        ({"command": "{python} train.py --out {rundir}"}, "unknown placeholder(s) ['rundir']"),
        ({"command": "{python} train.py"}, "must pass {run_dir}"),
        ({"num_retries": -1}, "sweep.num_retries must be >= 0"),
        ({"wait": False}, "wait: false needs a launcher"),
        ({"slurm": {"time": "2 hours"}}, "sweep.slurm.time '2 hours'"),
        ({"slurm": {"extra_sbatch_lines": ["#SBATCH --qos=low"]}}, "must be one sbatch option"),
        ({"nemo_run": {"executor": "slurm"}}, "sweep.nemo_run.account is required"),
        ({"local": {"devices": [0, 1]}}, "num_devices_per_proxy is 0"),
        ({"env": {"BAD-NAME": "1"}}, "not a valid environment variable"),
        ({"launcher": "slurm", "slurm": {"partiton": "x"}}, "unknown key(s) ['partiton']"),
    ],
)
def test_bad_values_name_the_setting(section: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _build(section)
    assert needle in str(info.value)


def test_unknown_launcher_from_the_cli_is_one_clear_line(tmp_path, capsys) -> None:
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump({"run_dir": "run", "sweep": {"launcher": "ray"}}))
    assert main(["sweep", str(config)]) == 2
    err = capsys.readouterr().err
    assert "sweep.launcher 'ray' is unknown" in err and "Traceback" not in err
