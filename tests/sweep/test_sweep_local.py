"""The local launcher and the run registry: completion, skip on rerun, retries, bad input."""

from __future__ import annotations

import json
import math

import pytest
from sweep_helpers import DOMAINS, TINY_PROXY, fake_command, run_sweep

from regmix_plugin.cli import main
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.registry import sweep_status
from regmix_plugin.tables import read_table


def _local(**over):
    section = {
        "launcher": "local",
        "command": fake_command(),
        "poll_interval_s": 0.2,
        "local": {"num_concurrent": 2},
    }
    section.update(over)
    return section


def test_sweep_completes_and_rerun_skips_finished_runs(make_sweep) -> None:
    s = make_sweep.write(_local(), num_mixtures=3)
    result = run_sweep(s.config)
    assert result.ok and sorted(result.launched) == sorted(s.ids)
    for mid in s.ids:
        folder = s.sweep_dir / "runs" / mid
        for name in ("blend.yaml", "train.log", "metrics.json", "DONE"):
            assert (folder / name).is_file(), (mid, name)
        # DONE is written last: after metrics.json
        assert (folder / "DONE").stat().st_mtime_ns >= (folder / "metrics.json").stat().st_mtime_ns
        assert s.starts(mid) == 1
    done_before = {m: (s.sweep_dir / "runs" / m / "DONE").read_bytes() for m in s.ids}

    again = run_sweep(s.config)
    assert again.ok and again.launched == []
    assert all(s.starts(m) == 1 for m in s.ids)
    assert {m: (s.sweep_dir / "runs" / m / "DONE").read_bytes() for m in s.ids} == done_before

    # status sees every run done; exit code 0
    status = sweep_status(s.run_dir)
    assert status.counts == {"done": 3, "running": 0, "failed": 0, "pending": 0}
    assert main(["status", str(s.sweep_dir)]) == 0


def test_failed_run_is_retried_then_reported_with_exit_code_and_log(make_sweep, capsys) -> None:
    # every start fails 5 times: with num_retries=1 each run gets 2 attempts, then is reported
    s = make_sweep.write(_local(command=fake_command(fail_times=5), num_retries=1), num_mixtures=2)
    code = main(["sweep", str(s.config)])
    out = capsys.readouterr()
    assert code == 1
    status = sweep_status(s.sweep_dir)
    assert status.counts["failed"] == 2 and status.counts["done"] == 0
    for rec in status.records:
        assert rec.num_attempts == 2 and rec.exit_code == 3
        assert "failing on purpose" in rec.log_tail
    for mid in s.ids:
        assert mid in out.err  # listed, not dropped
    assert "exit code 3" in out.out

    # a rerun relaunches the failed runs (fresh retry budget); fail_times=5 -> attempts 3, 4
    assert main(["sweep", str(s.config)]) == 1
    assert all(r.num_attempts == 4 for r in sweep_status(s.sweep_dir).records)
    # collect lists the failures and keeps their rows (empty cells)
    collected = collect_runs(s.sweep_dir)
    assert collected.table.ids == s.ids and collected.table.columns == []
    assert set(collected.missing) == set(s.ids)
    assert all("exit code 3" in why for why in collected.missing.values())


def test_flaky_run_succeeds_on_retry_and_keeps_its_history(make_sweep) -> None:
    s = make_sweep.write(_local(command=fake_command(fail_times=1), num_retries=2), num_mixtures=2)
    assert run_sweep(s.config).ok
    for mid in s.ids:
        attempts = json.loads((s.sweep_dir / "runs" / mid / "attempts.json").read_text())
        assert [a["exit_code"] for a in attempts] == [3, 0]
        assert "failing on purpose" in attempts[0]["log_tail"]
    table = collect_runs(s.run_dir).table
    assert table.ids == s.ids
    assert table.columns == sorted([*(f"val_loss/{d}" for d in DOMAINS), "target_loss/avg"])
    assert not any(math.isnan(v) for v in table.values.ravel())


def test_dry_run_prints_commands_and_launches_nothing(make_sweep, capsys) -> None:
    s = make_sweep.write(_local(), num_mixtures=2)
    assert main(["sweep", str(s.config), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "launcher: local" in out
    for mid in s.ids:
        assert f"--mixture {mid}" in out and "regmix_plugin.sweep.worker" in out
    assert not s.sweep_dir.exists()


def test_sweep_dir_of_a_different_config_is_refused_unless_forced(make_sweep) -> None:
    s = make_sweep.write(_local(), num_mixtures=2)
    assert run_sweep(s.config).ok
    s.write(_local(), num_mixtures=3, proxy={**TINY_PROXY, "num_tokens": 32 * 16 * 20})
    with pytest.raises(ConfigError) as info:
        run_sweep(s.config)
    msg = str(info.value)
    assert "different config" in msg and "proxy" in msg and "--force-mix" in msg
    assert main(["sweep", str(s.config)]) == 2  # the CLI prints the error, no traceback
    result = run_sweep(s.config, force_mix=True)
    assert result.ok and len(result.launched) == 1  # only the new mixture
    # once mixed in, the same config is accepted without the flag
    assert run_sweep(s.config).ok


def test_mixtures_that_do_not_match_the_catalogue_are_refused(make_sweep) -> None:
    s = make_sweep.write(_local(), columns=("a", "b", "zz"))
    with pytest.raises(DataError) as info:
        run_sweep(s.config)
    msg = str(info.value)
    assert "['c']" in msg and "['zz']" in msg and "regmix sample" in msg
    assert not s.sweep_dir.exists()


def test_weights_that_do_not_sum_to_one_are_refused(make_sweep) -> None:
    s = make_sweep.write(_local(), num_mixtures=1)
    path = s.run_dir / "mixtures.csv"
    path.write_text(path.read_text().replace("0.6", "0.7"))
    with pytest.raises(DataError, match=r"sum to 1\.1"):
        run_sweep(s.config)


def test_missing_mixtures_file_names_the_fix(make_sweep) -> None:
    s = make_sweep.write(_local())
    (s.run_dir / "mixtures.csv").unlink()
    with pytest.raises(DataError, match="regmix sample"):
        run_sweep(s.config)


@pytest.mark.slow
def test_local_sweep_of_real_proxies_then_collect(make_sweep) -> None:
    section = _local()
    del section["command"]  # the default: regmix train-proxy
    s = make_sweep.write(section, num_mixtures=2)
    result = run_sweep(s.config)
    assert result.ok, [r.as_dict() for r in result.status.records]
    assert main(["collect", str(s.run_dir)]) == 0
    table = read_table(s.run_dir / "results.csv")
    assert table.ids == s.ids
    assert table.columns == [f"val_loss/{d}" for d in DOMAINS]
    for mid in s.ids:
        metrics = json.loads((s.sweep_dir / "runs" / mid / "metrics.json").read_text())
        assert metrics["mixture_id"] == mid
        assert list(table.row(mid)) == [metrics["metrics"][c] for c in table.columns]
        assert all(0 < v < math.log(96) + 1 for v in table.row(mid))
    # a rerun trains nothing
    again = run_sweep(s.config)
    assert again.ok and again.launched == []
