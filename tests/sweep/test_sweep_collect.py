"""``regmix collect``: plugin runs, and runs made with a team's own Megatron-LM/NeMo scripts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from regmix_plugin.cli import main
from regmix_plugin.config import from_dict
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.sweep.collect import collect_runs
from regmix_plugin.sweep.config import CollectSettings
from regmix_plugin.sweep.parsers import parse_megatron_log
from regmix_plugin.tables import read_table


def _eval_line(loss: float, prefix: str, name: str = "") -> list[str]:
    """One evaluation as megatron.training's evaluate_and_print_results prints it (0.19.2)."""
    suffix = f"-{name}" if name else ""
    body = f" validation{suffix} loss at {prefix} | lm loss value: {loss:.6E} | "
    body += f"lm loss PPL: {math.exp(min(20, loss)):.6E} | "
    return ["-" * (len(body) + 1), body, "-" * (len(body) + 1)]


def _megatron_log(losses: list[float], *, final: float | None = None, name: str = "") -> str:
    """Training-log text in Megatron-LM's format: periodic evaluations, then the final ones."""
    lines = [" [2026-11-29 10:00:00] iteration       10/     100 | lm loss: 5.1E+00 |"]
    for i, loss in enumerate(losses):
        lines += _eval_line(loss, f"iteration {(i + 1) * 50}", name)
    if final is not None:
        last = len(losses) * 50
        lines += _eval_line(final, f"iteration {last} on validation set", name)
        lines += _eval_line(9.9, f"iteration {last} on test set", name)
    return "\n".join(lines) + "\n"


def test_megatron_log_gives_the_last_validation_loss() -> None:
    settings = CollectSettings()
    found = parse_megatron_log(_megatron_log([4.5, 4.0, 3.75]), settings)
    assert found == {None: (150.0, 3.75)}
    found = parse_megatron_log(_megatron_log([4.5, 4.0], final=3.5), settings)
    assert found == {None: (100.0, 3.5)}  # end of training, not the test set


def test_named_validation_sets_of_megatron_lm() -> None:
    # --multiple-validation-sets --validation-set-names wiki code-py
    settings = CollectSettings()
    text = _megatron_log([4.0, 3.0], final=2.75, name="wiki") + _megatron_log(
        [5.0, 4.5], name="code-py"
    )
    assert parse_megatron_log(text, settings) == {"wiki": (100.0, 2.75), "code-py": (100.0, 4.5)}
    # without names Megatron-LM numbers the sets: validation-0, validation-1
    text = _megatron_log([4.0], name="0") + _megatron_log([5.0], name="1")
    assert parse_megatron_log(text, settings) == {"0": (50.0, 4.0), "1": (50.0, 5.0)}
    # a guessed format of earlier versions of this parser is not taken for a loss
    assert (
        parse_megatron_log(" validation loss at the end | lm loss wiki value: 3.0 |", settings)
        == {}
    )


def test_external_runs_from_logs_and_tensorboard(tmp_path: Path, capsys) -> None:
    from torch.utils.tensorboard import SummaryWriter

    runs = tmp_path / "team_runs"
    # run 1: Megatron-LM, two validation sets, TensorBoard (real writer) + its log
    w = SummaryWriter(str(runs / "mix1" / "tensorboard"))
    for step, (a, b) in [(50, (4.0, 5.0)), (100, (3.25, 4.5))]:
        # the tags megatron.training writes with --validation-set-names a_text_document ...
        w.add_scalar("lm loss validation-a_text_document", a, step)
        w.add_scalar("lm loss validation-b_text_document", b, step)
        w.add_scalar("lm loss validation-a_text_document vs samples", 99.0, step * 64)
        w.add_scalar("lm loss validation-a_text_document ppl", 98.0, step)
        w.add_scalar("lm loss validation-a_text_document ppl vs samples", 97.0, step * 64)
    w.close()
    (runs / "mix1" / "train.log").write_text(_megatron_log([4.4, 3.9]))
    # run 2: NeMo with two validation dataloaders (Lightning's suffixes)
    w = SummaryWriter(str(runs / "mix2" / "lightning_logs"))
    for step, (a, b) in [(10, (4.5, 5.5)), (20, (3.5, 4.25))]:
        w.add_scalar("val_loss/dataloader_idx_0", a, step)
        w.add_scalar("val_loss/dataloader_idx_1", b, step)
    w.close()
    # run 3: only a log, one validation set
    (runs / "mix3").mkdir(parents=True)
    (runs / "mix3" / "slurm-123.out").write_text(_megatron_log([4.0, 3.5]))
    # run 4: launched but crashed before any evaluation
    (runs / "mix4").mkdir()
    (runs / "mix4" / "slurm-124.out").write_text("Traceback (most recent call last):\n  OOM\n")

    config = tmp_path / "study.yaml"
    config.write_text(
        "run_dir: run\nsweep:\n  collect:\n    dataset_names:\n"
        "      a_text_document: a\n      b_text_document: b\n"
        "      dataloader_idx_0: a\n      dataloader_idx_1: b\n"
    )
    mixtures = tmp_path / "mixtures.csv"
    ids = ["mix1", "mix2", "mix3", "mix4", "mix5"]
    mixtures.write_text("mixture_id,a,b\n" + "".join(f"{m},0.5,0.5\n" for m in ids))
    out = tmp_path / "results.csv"
    code = main(
        [
            "collect",
            str(runs),
            "--config",
            str(config),
            "--mixtures",
            str(mixtures),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    table = read_table(out)
    assert table.ids == ids  # missing runs keep their row
    assert table.columns == ["val_loss", "val_loss/a", "val_loss/b"]
    assert table.row("mix1")[1:].tolist() == [3.25, 4.5]  # TensorBoard values, last step
    assert table.row("mix1")[0] == pytest.approx(3.9)  # the log's single-set line
    assert table.row("mix2")[1:].tolist() == [3.5, 4.25]
    assert table.row("mix3")[0] == 3.5 and math.isnan(table.row("mix3")[1])
    assert all(math.isnan(v) for v in table.row("mix4")) and all(
        math.isnan(v) for v in table.row("mix5")
    )
    missing = json.loads((tmp_path / "results.csv.missing.json").read_text())
    assert set(missing) == set(ids) - {"mix1"}  # partial rows are listed too
    assert "no validation loss" in missing["mix4"] and "no run folder" in missing["mix5"]
    assert "lacks metric(s)" in missing["mix3"]
    for mid in ("mix4", "mix5"):
        assert mid in err


def test_collect_of_a_folder_without_results_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs" / "m1").mkdir(parents=True)
    collected = collect_runs(tmp_path / "runs")
    assert collected.table.ids == ["m1"] and collected.table.columns == []
    assert main(["collect", str(tmp_path / "runs")]) == 2
    with pytest.raises(DataError, match="not a folder"):
        collect_runs(tmp_path / "nope")


def test_collect_settings_reject_a_pattern_without_a_dataset_group() -> None:
    with pytest.raises(ConfigError, match=r"\(\?P<dataset>"):
        from_dict(CollectSettings, {"tag_patterns": ["^val_(.*)$"]}, "sweep.collect")
    with pytest.raises(ConfigError, match="not a valid regex"):
        from_dict(CollectSettings, {"tag_patterns": ["(?P<dataset>"]}, "sweep.collect")


def test_failed_or_diverged_external_runs_are_missing_with_the_reason(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for mid, doc in {
        "ok": {"mixture_id": "ok", "complete": True, "metrics": {"val_loss/a": 2.5}},
        "failed": {"mixture_id": "failed", "complete": False, "failure": "diverged at step 7"},
        "nan": {"mixture_id": "nan", "complete": True, "metrics": {"val_loss/a": float("nan")}},
    }.items():
        (runs / mid).mkdir(parents=True)
        (runs / mid / "metrics.json").write_text(json.dumps(doc))
    collected = collect_runs(runs)
    assert collected.table.ids == ["failed", "nan", "ok"]
    assert collected.table.row("ok").tolist() == [2.5]
    assert collected.missing["failed"] == "the proxy failed: diverged at step 7"
    assert "not finite" in collected.missing["nan"]
