"""The typed study, ``--set`` overrides, the run layout and the stage contract of ``regmix run``.

Real ``.bin/.idx`` files (megatron-core's writer), real LightGBM-free fits (the linear regressor
keeps it fast); no proxy is trained here: ``sweep.mixtures`` and ``sweep.collect.results`` bring
the proxy results, as they do for a team whose proxies ran elsewhere.
"""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix_plugin import cli, domains, stages
from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.errors import ConfigError
from regmix_plugin.pipeline import plan_run, run_pipeline, select_stages
from regmix_plugin.study import load_study
from regmix_plugin.tables import Table, read_table, write_table

NAMES = ("web", "code", "books")


def _study_yaml(tmp_path: Path, **extra: object) -> Path:
    study = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 20_000,
            "entries": [{"name": n, "prefixes": [f"data/{n}_text_document"]} for n in NAMES],
        },
        "sample": {"num_mixtures": 24, "seed": 1, "grid": 0.01, "min_weight": 0.01},
        "fit": {"regressor": "linear", "num_folds": 3, "targets": ["target_loss/t"]},
        "optimize": {"target": "target_loss/t", "num_candidates": 4000, "top_k": 20},
        "emit": {"split": "80,20,0"},
        **extra,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    return path


def _results_for(mixtures: Table) -> Table:
    """A measured-like target: lowest near (0.2, 0.5, 0.3), computed here, not by the tool."""
    best = np.array([0.2, 0.5, 0.3])
    x = mixtures.select(list(NAMES))
    y = 2.0 + ((x - best) ** 2).sum(axis=1)
    return Table("mixture_id", list(mixtures.ids), ["target_loss/t"], y[:, None])


@pytest.fixture
def corpus(make_corpus) -> dict[str, str]:
    return make_corpus({"web": 60, "code": 40, "books": 30}, mean_len=24)


def test_study_resolves_paths_and_round_trips(tmp_path: Path, corpus: dict[str, str]) -> None:
    study = load_study(_study_yaml(tmp_path))
    assert study.run_dir == tmp_path / "run"
    assert study.config_dir == tmp_path
    assert study.domains is not None
    assert study.domains.entries[0].prefixes == [str(tmp_path / "data" / "web_text_document")]
    assert study.layout.mixtures == tmp_path / "run" / "mixtures.csv"
    # The resolved form loads back into the same study from anywhere (every path absolute).
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = elsewhere / "resolved.yaml"
    copy.write_text(yaml.safe_dump(study.resolved(), sort_keys=False))
    again = load_study(copy)
    assert again.resolved() == study.resolved()


def test_set_overrides_are_typed_and_checked(tmp_path: Path, corpus: dict[str, str]) -> None:
    path = _study_yaml(tmp_path)
    study = load_study(path, ["sample.num_mixtures=7", "optimize.top_k=5", "run_dir=other"])
    assert study.sample is not None and study.sample.num_mixtures == 7
    assert study.optimize.top_k == 5 and study.run_dir == tmp_path / "other"
    assert study.overrides == ("sample.num_mixtures=7", "optimize.top_k=5", "run_dir=other")
    with pytest.raises(ConfigError, match=r"sample: unknown key\(s\) \['num_mixturez'\]"):
        load_study(path, ["sample.num_mixturez=7"])
    with pytest.raises(ConfigError, match=r"sample.num_mixtures: expected an integer"):
        load_study(path, ["sample.num_mixtures=many"])
    with pytest.raises(ConfigError, match=r"unknown top-level key\(s\) \['sampel'\]"):
        load_study(path, ["sampel.num_mixtures=7"])


@pytest.mark.parametrize(
    ("run_dir", "message"), [(["a", "b"], "run_dir is \\['a', 'b'\\]"), (12345, "run_dir is 12345")]
)
def test_run_dir_must_be_one_path(tmp_path: Path, run_dir: object, message: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({"run_dir": run_dir}))
    with pytest.raises(ConfigError, match=message):
        load_study(path)


def test_cli_set_reaches_the_stage_and_bad_keys_exit_2(
    tmp_path: Path, corpus: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_study_yaml(tmp_path))
    assert cli.main(["sample", config, "--set", "sample.num_mixtures=5"]) == 0
    assert len(read_table(tmp_path / "run" / "mixtures.csv").ids) == 5
    capsys.readouterr()
    assert cli.main(["sample", config, "--set", "sample.num_mixtures=lots"]) == 2
    err = capsys.readouterr().err
    assert "sample.num_mixtures: expected an integer" in err and "Traceback" not in err


def _external_tables(tmp_path: Path, study_path: Path) -> tuple[Path, Path]:
    """Mixtures and results made outside the run folder (a sweep run elsewhere)."""
    study = load_study(study_path)
    outside = tmp_path / "brought"
    layout = study.layout
    catalogue = stages.build_catalogue(study)
    result = stages.sample(study, type(layout)(outside), catalogue)
    write_table(outside / "results.csv", _results_for(result.mixtures.table()))
    return outside / "mixtures.csv", outside / "results.csv"


def test_run_honours_sweep_mixtures_and_collect_results(
    tmp_path: Path, corpus: dict[str, str]
) -> None:
    """``sweep.mixtures`` and ``sweep.collect.results`` are read by every later stage."""
    first = _study_yaml(tmp_path)
    mixtures, results = _external_tables(tmp_path, first)
    config = _study_yaml(
        tmp_path, sweep={"mixtures": str(mixtures), "collect": {"results": str(results)}}
    )
    study = load_study(config)
    assert "sample" not in [s.name for s in select_stages(study, None, None)]  # mixtures given
    outcome = run_pipeline(study, start="fit", stop="emit")
    assert outcome == {"fit": "done", "optimize": "done", "emit": "done"}
    run = tmp_path / "run"
    assert not (run / "mixtures.csv").exists() and not (run / "results.csv").exists()
    meta = json.loads((run / "model" / "metadata.json").read_text())
    assert meta["targets"]["target_loss/t"]["num_rows"] == len(read_table(results).ids)
    chosen = yaml.safe_load((run / "weights.yaml").read_text())
    best = chosen["baselines"]["best_observed"]
    assert best["observed"] == pytest.approx(float(read_table(results).values.min()))


def _rewrite(prefix: str, seed: int) -> None:
    """Rewrite a prefix with new tokens but the same document lengths (same .idx, new .bin)."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    ds = IndexedDataset(prefix)
    lengths = [int(n) for n in ds.sequence_lengths]
    del ds
    rng = np.random.default_rng(seed)
    before = os.stat(f"{prefix}.bin").st_mtime_ns
    write_indexed_dataset(prefix, (rng.integers(0, 100, size=n) for n in lengths))
    if os.stat(f"{prefix}.bin").st_mtime_ns == before:  # a coarse clock: make the change seen
        os.utime(f"{prefix}.bin", ns=(before + 1_000_000, before + 1_000_000))


def test_changed_data_reruns_exactly_the_stages_it_feeds(
    tmp_path: Path, corpus: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _study_yaml(tmp_path)
    study = load_study(config)
    assert run_pipeline(study, stop="sample") == {"domains": "done", "sample": "done"}
    layout = study.layout
    layout.results.parent.mkdir(parents=True, exist_ok=True)
    write_table(layout.results, _results_for(read_table(layout.mixtures)))

    # The catalogue file records what the data looked like.
    record = json.loads(layout.catalogue.read_text())
    web = record["domains"][0]["prefixes"][0]
    assert (
        web["prefix"] == corpus["web"]
        and web["bin_bytes"] == os.stat(f"{corpus['web']}.bin").st_size
    )

    # The idx headers are read once per process however many stages ask (3 prefixes here).
    calls: list[str] = []
    real = domains.read_index_counts

    def counting(prefix: str) -> object:
        calls.append(prefix)
        return real(prefix)

    monkeypatch.setattr(domains, "read_index_counts", counting)
    domains._CATALOGUES.clear()
    sequence = ["domains", "sample", "fit", "optimize", "emit"]
    outcome = {}
    for stage in sequence:
        outcome.update(run_pipeline(study, start=stage, stop=stage))
    assert outcome == dict.fromkeys(sequence, "skipped") | {
        "fit": "done",
        "optimize": "done",
        "emit": "done",
    }
    assert sorted(calls) == sorted(corpus.values())

    for stage in sequence:
        assert plan_run(study, start=stage, stop=stage).states[stage] == "done, would skip"

    # Rewrite one domain in place: same token counts, new content and modification time.
    _rewrite(corpus["code"], seed=9)
    mixtures_before = layout.mixtures.read_bytes()
    outcome = {}
    for stage in sequence:
        outcome.update(run_pipeline(study, start=stage, stop=stage))
    # domains sees the data change and rewrites catalogue.json; sample, optimize and emit read
    # it and rerun; fit reads only the (unchanged) mixtures and results and is skipped.
    assert outcome == {
        "domains": "done",
        "sample": "done",
        "fit": "skipped",
        "optimize": "done",
        "emit": "done",
    }
    assert layout.mixtures.read_bytes() == mixtures_before  # same token counts, same design


def test_layout_names_every_artifact_once() -> None:
    """No module but regmix_plugin.layout spells a run-folder artifact's name in code."""
    root = Path(__file__).resolve().parents[1] / "regmix_plugin"
    names = {
        "mixtures.csv",
        "mixtures_summary.json",
        "results.csv",
        "weights.yaml",
        "evaluation.json",
        "report.html",
        "report.md",
        "catalogue.json",
        "config.resolved.yaml",
        "metrics.json",
        "DONE",
        "manifest.json",
        "sweep.json",
        "metadata.json",
    }
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "layout.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and node.value in names
            ):
                offenders.append(f"{path.relative_to(root)}:{node.lineno}: {node.value!r}")
    assert not offenders, "\n".join(offenders)


def test_a_killed_fit_leaves_nothing_the_rerun_keeps(
    tmp_path: Path, corpus: dict[str, str]
) -> None:
    """What a SIGKILL mid-write leaves (a model folder built aside, a temp file of an atomic
    write) is removed by the next run of the stage that writes it."""
    config = _study_yaml(tmp_path)
    study = load_study(config)
    run_pipeline(study, stop="sample")
    layout = study.layout
    write_table(layout.results, _results_for(read_table(layout.mixtures)))
    aside = layout.root / ".model.abc123"  # fit builds the model folder here, then renames it
    aside.mkdir(parents=True)
    (aside / "metadata.json").write_text("{")
    partial = layout.root / ".weights.yaml.x1y2.tmp"  # a killed atomic write
    partial.write_text("weights: {web: 0.")
    assert run_pipeline(study, start="fit", stop="optimize") == {"fit": "done", "optimize": "done"}
    assert not aside.exists() and not partial.exists()
    leftovers = [p.name for p in layout.root.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_fit_out_under_a_file_is_a_clear_error(
    tmp_path: Path, corpus: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(_study_yaml(tmp_path))
    assert cli.main(["sample", config]) == 0
    results = tmp_path / "results.csv"
    write_table(results, _results_for(read_table(tmp_path / "run" / "mixtures.csv")))
    blocker = tmp_path / "model.yaml"
    blocker.write_text("x")
    args = ["fit", config, "--results", str(results), "--out", str(blocker / "model")]
    capsys.readouterr()
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "which is a file, not a folder" in err and "Traceback" not in err
