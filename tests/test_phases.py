"""Phase schedules emitted for every stack, checked with megatron-core's builder and arithmetic."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from megatron.core.datasets.utils import get_blend_from_list

from regmix_plugin.blending import build_blend_indices
from regmix_plugin.blending.phases import read_blend_schedule
from regmix_plugin.domains import load_catalogue
from regmix_plugin.emit import EmitConfig
from regmix_plugin.emit_phases import PhaseMixture, emit_schedule, phase_iterations
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.megatron import use_exact_ratio_blending
from regmix_plugin.mixtures import SampleConfig
from regmix_plugin.schedules import (
    PhasesConfig,
    format_schedule,
    is_schedule,
    join_schedule,
    optimize_schedule,
    sample_schedules,
    schedule_columns,
    split_schedule,
)
from regmix_plugin.study import load_study

SPLIT = "80,20,0"
GBS, SEQ = 4, 8
MAIN = {"web": 0.5, "code": 0.3, "books": 0.0, "math": 0.2}
QUALITY = {"web": 0.1, "code": 0.2, "books": 0.3, "math": 0.4}


@pytest.fixture
def catalogue(tmp_path, make_corpus):
    make_corpus({"web_a": 60, "web_b": 30, "code": 50, "books": 30, "math": 40}, mean_len=24)
    cfg = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 3_200,
            "max_epochs": 4,
            "entries": [
                {"name": "web", "prefixes": ["data/web_*_text_document"]},
                {"name": "code", "prefixes": ["data/code_text_document"]},
                {"name": "books", "prefixes": ["data/books_text_document"], "max_epochs": 1},
                {"name": "math", "prefixes": ["data/math_text_document"]},
            ],
        },
        "emit": {"split": SPLIT},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_catalogue(load_study(path).domains)


def _megatron_lm_phase_samples(flag: str, train_iters: int, iteration: int, gbs: int = GBS) -> int:
    """Megatron-LM's rule (PR 2938, ``get_train_valid_test_num_samples``), restated: the launch
    that resumes at ``iteration`` builds its dataset for the samples between the transition at or
    before it and the next one (the flag parsed as its argument check parses it)."""
    transitions = sorted(int(x.strip()) for x in flag.split(","))
    bounds = [0, *(t * gbs for t in transitions), train_iters * gbs]
    current = iteration * gbs
    last = max(b for b in bounds if b <= current)
    nxt = min(b for b in bounds if b > current)
    return nxt - last


def _build(blend: Any, size: int) -> Any:
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer

    config = GPTDatasetConfig(
        random_seed=1,
        sequence_length=SEQ,
        tokenizer=NullTokenizer(vocab_size=128),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        blend=blend,
        split=SPLIT,
        mid_level_dataset_surplus=0.05,
    )
    return BlendedMegatronDatasetBuilder(GPTDataset, [size, 8, 0], lambda: True, config).build()[0]


def test_phase_iterations_match_megatron_lm_arithmetic() -> None:
    its = phase_iterations([0.8, 0.2], 1_000_003, global_batch_size=64, seq_length=128)
    assert its.train_iters == math.ceil(1_000_003 / (64 * 128)) == 123
    # 0.8 * 123 = 98.4 and 0.2 * 123 = 24.6: the larger remainder (.6) gets the unit.
    assert its.phase_iters == (98, 25) and its.transitions == (98,) and its.flag == "98"
    for phase, start in enumerate((0, 98)):
        got = _megatron_lm_phase_samples(its.flag, its.train_iters, start, gbs=64)
        assert got == its.phase_samples[phase] == its.phase_iters[phase] * 64
    three = phase_iterations([0.5, 0.3, 0.2], 100 * 8 * 16, global_batch_size=8, seq_length=16)
    assert three.transitions == (50, 80) and three.flag == "50,80"
    assert sum(three.phase_tokens) == 100 * 8 * 16
    with pytest.raises(ConfigError, match="no iteration"):
        phase_iterations([0.99, 0.01], 10 * 64 * 128, global_batch_size=64, seq_length=128)
    with pytest.raises(ConfigError, match="sum to 1"):
        phase_iterations([0.8, 0.1], 10_000, global_batch_size=1, seq_length=1)


def test_emit_schedule_for_every_stack(catalogue, tmp_path: Path) -> None:
    phases = [
        PhaseMixture(name="main", share=0.8, weights=MAIN),
        PhaseMixture(name="quality", share=0.2, weights=QUALITY),
    ]
    out = tmp_path / "blend"
    result = emit_schedule(
        catalogue, phases, out, EmitConfig(split=SPLIT), global_batch_size=GBS, seq_length=SEQ
    )
    its = result.iterations
    assert its.train_iters == 3_200 // (GBS * SEQ) == 100 and its.transitions == (80,)
    flag = (out / "phase_transition_iterations.txt").read_text().strip()
    assert flag == "80"
    launch = (out / "megatron_lm_phases.txt").read_text()
    assert launch.count("--phase-transition-iterations 80") == 2
    # Each phase's Megatron-LM launch: its data_args.txt, parsed as Megatron-LM parses it, built
    # by megatron-core's builder for the samples Megatron-LM's rule gives that launch.
    for phase, start, weights in ((phases[0], 0, MAIN), (phases[1], 80, QUALITY)):
        assert f"--data-args-path {out / phase.name / 'data_args.txt'}" in launch
        text = (out / phase.name / "data_args.txt").read_text().split()
        blend = get_blend_from_list(text)
        size = _megatron_lm_phase_samples(flag, its.train_iters, start)
        ds = _build(blend, size)
        assert size == (80 if start == 0 else 20) * GBS
        # megatron-core sizes a blend as the sum of ceil(size x weight): a few samples more,
        # never fewer; the launch reads its first `size`.
        assert size <= len(ds) < size + len(ds.datasets)
        domain_of = {p: d.name for d in catalogue.domains for p in d.prefixes}
        shares: dict[str, float] = {}
        counts = np.bincount(ds.dataset_index[:size], minlength=len(ds.datasets))
        for mid, c in zip(ds.datasets, counts, strict=True):
            name = domain_of[mid.dataset_path]
            shares[name] = shares.get(name, 0.0) + c / size
        for name, w in weights.items():
            assert abs(shares.get(name, 0.0) - w) <= 3 / size
        # NeMo 2 and Megatron-Bridge: one dataset config per phase, over the same prefixes.
        bridge = yaml.safe_load((out / phase.name / "bridge_dataset.yaml").read_text())
        assert bridge["dataset"]["blend"][0] == blend[0]
        assert (out / phase.name / "nemo2_data.py").is_file()
    # Epochs per domain and phase: weight x phase tokens / domain tokens, summed for the run.
    tokens = {d.name: d.num_tokens for d in catalogue.domains}
    for name in tokens:
        main = MAIN[name] * 80 * GBS * SEQ / tokens[name]
        quality = QUALITY[name] * 20 * GBS * SEQ / tokens[name]
        assert result.epochs[name]["main"] == pytest.approx(main)
        assert result.epochs[name]["total"] == pytest.approx(main + quality)
    manifest = json.loads((out / "schedule_manifest.json").read_text())
    assert manifest["phase_transition_iterations"] == [80]
    assert [p["samples"] for p in manifest["phases"]] == [320, 80]


def test_schedule_file_serves_the_whole_run_with_matching_boundaries(
    catalogue, tmp_path: Path
) -> None:
    phases = [
        PhaseMixture(name="main", share=0.8, weights=MAIN),
        PhaseMixture(name="quality", share=0.2, weights=QUALITY),
    ]
    out = tmp_path / "blend"
    result = emit_schedule(
        catalogue, phases, out, EmitConfig(split=SPLIT), global_batch_size=GBS, seq_length=SEQ
    )
    schedule = read_blend_schedule(out / "schedule.json")
    train_samples = result.iterations.train_iters * GBS
    # Its phases end where Megatron-LM's transitions are.
    np.testing.assert_array_equal(
        schedule.schedule.phase_samples(train_samples, global_batch_size=GBS), [320, 80]
    )
    blend = get_blend_from_list((out / "schedule_data_args.txt").read_text().split())
    assert blend is not None and blend[0] == list(schedule.prefixes)
    with use_exact_ratio_blending(schedule=out / "schedule.json"):
        ds = _build(blend, train_samples)
    assert ds.schedule == schedule and train_samples <= len(ds) < train_samples + 5
    index = np.asarray(ds.dataset_index, dtype=np.int64)
    # The iteration boundary holds whatever the builder's rounding up adds at the end.
    for p, (lo, hi) in enumerate(((0, 320), (320, len(ds)))):
        want = build_blend_indices(schedule.schedule.phases[p].weights, hi - lo)[0]
        np.testing.assert_array_equal(index[lo:hi], want)
    books = schedule.domains.index("books")
    assert not np.any(index[:320] == books)  # books has weight 0 in the main phase


# -- the search over schedules ---------------------------------------------------------------------


def test_phases_config_defaults_and_errors() -> None:
    assert not PhasesConfig().enabled and PhasesConfig().phase_names == ["phase1"]
    two = PhasesConfig(shares=[0.8, 0.2], names=["main", "quality"])
    assert two.enabled and two.phase_names == ["main", "quality"]
    with pytest.raises(ConfigError, match="sum to 1"):
        PhasesConfig(shares=[0.8, 0.1])
    with pytest.raises(ConfigError, match="names"):
        PhasesConfig(shares=[0.5, 0.5], names=["a", "a"])
    with pytest.raises(ConfigError, match=r"\(0, 1\]"):
        PhasesConfig(shares=[1.5, -0.5])


def test_schedule_rows_round_trip() -> None:
    row = join_schedule(["main", "quality"], [0.8, 0.2], [MAIN, QUALITY])
    assert list(row)[:4] == ["web@main", "code@main", "books@main", "math@main"]
    assert math.isclose(sum(row.values()), 1.0)
    names, shares, mixtures = split_schedule(row, list(MAIN))
    assert names == ["main", "quality"] and shares == pytest.approx([0.8, 0.2])
    assert mixtures[0] == pytest.approx(MAIN) and mixtures[1] == pytest.approx(QUALITY)
    with pytest.raises(DataError, match="every domain"):
        split_schedule({"web@main": 0.5, "web@q": 0.5}, list(MAIN))
    assert is_schedule(row) and not is_schedule(MAIN)


def test_sample_schedules_keep_shares_and_whole_run_caps(catalogue) -> None:
    phases = PhasesConfig(shares=[0.8, 0.2], names=["main", "quality"])
    config = SampleConfig(num_mixtures=40, seed=3, grid=1e-3, min_weight=1e-3)
    table = sample_schedules(catalogue, config, phases)
    again = sample_schedules(catalogue, config, phases)
    assert table.ids == again.ids and np.array_equal(table.weights, again.weights)
    assert table.names == schedule_columns(catalogue.names, ["main", "quality"])
    assert len(set(table.ids)) == 40
    blocks = table.weights.reshape(40, 2, len(catalogue.names))
    np.testing.assert_allclose(blocks.sum(axis=2), np.tile([0.8, 0.2], (40, 1)), atol=1e-9)
    # Over the whole run no domain passes its cap (books: 1 epoch; the others: 4).
    caps = np.array([d.max_epochs * d.num_tokens / 3_200 for d in catalogue.domains])
    assert np.all(blocks.sum(axis=1) <= caps + 1e-9)
    # The phases differ: a schedule is not one mixture repeated.
    assert np.abs(blocks[:, 0] / 0.8 - blocks[:, 1] / 0.2).max() > 0.1


class _Planted:
    """A known loss over schedules (not a model of ours): distance of each phase's mixture to
    its own planted optimum. Used to fit the real regressor, whose choice is then checked."""

    def __init__(self, targets: list[np.ndarray], shares: list[float]) -> None:
        self.targets, self.shares = targets, shares

    def loss(self, wide: np.ndarray) -> np.ndarray:
        k = len(self.targets[0])
        out = np.zeros(wide.shape[0])
        for p, (t, s) in enumerate(zip(self.targets, self.shares, strict=True)):
            w = wide[:, p * k : (p + 1) * k] / s
            out += s * ((w - t[None, :]) ** 2).sum(axis=1)
        return out


def test_optimize_schedule_with_a_fitted_model(catalogue, tmp_path: Path) -> None:
    from regmix_plugin.regression.fitting import FitConfig, fit, load_model
    from regmix_plugin.tables import Table

    phases = PhasesConfig(shares=[0.8, 0.2], names=["main", "quality"])
    planted = _Planted([np.array([0.5, 0.3, 0.0, 0.2]), np.array([0.1, 0.1, 0.3, 0.5])], [0.8, 0.2])
    table = sample_schedules(
        catalogue, SampleConfig(num_mixtures=160, seed=1, grid=1e-3, min_weight=1e-3), phases
    )
    y = planted.loss(table.weights)
    results = Table("mixture_id", table.ids, ["loss"], y[:, None])
    fit(
        table.table(),
        results,
        ["loss"],
        FitConfig(regressor="lightgbm", num_members=0),
        tmp_path / "model",
    )
    model = load_model(tmp_path / "model")
    assert model.domains == table.names  # the per-phase weights are the features
    choice = optimize_schedule(
        model, "loss", catalogue, phases, num_candidates=20_000, top_k=50, seed=0
    )
    chosen = np.array([choice.weights[c] for c in table.names])
    np.testing.assert_allclose(chosen.reshape(2, 4).sum(axis=1), [0.8, 0.2], atol=1e-9)
    caps = np.array([d.max_epochs * d.num_tokens / 3_200 for d in catalogue.domains])
    assert np.all(chosen.reshape(2, 4).sum(axis=0) <= caps + 1e-9)
    single = np.concatenate([s * np.array(list(choice.single.values())) for s in (0.8, 0.2)])
    # Judged by the planted loss (not the model): the schedule beats the best single mixture,
    # and the best sampled design point.
    true_chosen, true_single = planted.loss(chosen[None, :])[0], planted.loss(single[None, :])[0]
    assert true_chosen < true_single
    assert choice.mixtures[1]["math"] > choice.mixtures[0]["math"]  # quality phase: more math
    text, warnings = format_schedule(
        catalogue, choice.phases, choice.mixtures, [0.8 * 3_200, 0.2 * 3_200]
    )
    assert "epochs total" in text and "quality" in text and warnings == []


# -- the whole study with phases -------------------------------------------------------------------

PHASED_STUDY = {
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
    "phases": {
        "shares": [0.75, 0.25],
        "names": ["main", "late"],
        "global_batch_size": 8,
        "seq_length": 64,
    },
    "sample": {"num_mixtures": 10, "seed": 0, "temperature": 0.5, "grid": 0.01, "min_weight": 0.01},
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
    },
    "sweep": {"launcher": "local", "local": {"num_concurrent": 2}},
    "fit": {"targets": ["target_loss/target"], "num_folds": 4},
    "optimize": {"target": "target_loss/target", "num_candidates": 20000},
    "emit": {"split": "80,20,0"},
    "evaluate": {"target": "target_loss/target", "baselines": ["uniform"], "num_seeds": 2},
}


@pytest.mark.slow
def test_regmix_run_searches_schedules_end_to_end(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    (tmp_path / "study.yaml").write_text(yaml.safe_dump(PHASED_STUDY, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "regmix_plugin", "run", "study.yaml"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    run = tmp_path / "run"
    header = (run / "mixtures.csv").read_text().splitlines()[0].split(",")
    assert header[1:] == ["a@main", "b@main", "c@main", "a@late", "b@late", "c@late"]
    metrics = json.loads(next((run / "sweep" / "runs").glob("*/metrics.json")).read_text())
    assert sum(metrics["weights"].values()) == pytest.approx(1.0)
    assert all("@" in k for k in metrics["weights"])
    doc = yaml.safe_load((run / "weights.yaml").read_text())
    sched = doc["schedule"]
    assert sched["phases"] == ["main", "late"] and sched["shares"] == pytest.approx([0.75, 0.25])
    for name in ("main", "late"):
        assert sum(sched["mixtures"][name].values()) == pytest.approx(1.0)
        assert (run / "blend" / name / "data_args.txt").is_file()
    # 100,000 tokens of 8 x 64: 196 iterations (ceil), 147 in the first phase (0.75 x 196).
    assert (run / "blend" / "phase_transition_iterations.txt").read_text().strip() == "147"
    assert read_blend_schedule(run / "blend" / "schedule.json").global_batch_size == 8
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert {"chosen", "best_single_mixture", "uniform"} <= set(evaluation["runs"])
    report = (run / "report.md").read_text()
    assert "The chosen schedule" in report and "epochs total" in report


def test_report_shows_the_schedule(catalogue, tmp_path: Path) -> None:
    from regmix_plugin.layout import RunLayout
    from regmix_plugin.report import ReportConfig, write_report
    from regmix_plugin.schedules import phase_epochs

    tokens = [0.8 * 3_200, 0.2 * 3_200]
    epochs = phase_epochs(catalogue, ["main", "quality"], [MAIN, QUALITY], tokens)
    doc = {
        "weights": join_schedule(["main", "quality"], [0.8, 0.2], [MAIN, QUALITY]),
        "target": "loss",
        "predicted": {"chosen": 1.5, "best_single_mixture": 1.75},
        "schedule": {
            "phases": ["main", "quality"],
            "shares": [0.8, 0.2],
            "mixtures": {"main": MAIN, "quality": QUALITY},
            "epochs": epochs,
            "best_single_mixture": {"web": 0.4, "code": 0.3, "books": 0.1, "math": 0.2},
        },
    }
    layout = RunLayout(root=tmp_path / "run")
    layout.root.mkdir()
    layout.weights.write_text(yaml.safe_dump(doc))
    _, md = write_report(layout, ReportConfig(), catalogue=catalogue)
    text = md.read_text()
    assert "## The chosen schedule" in text
    assert "schedule 1.5000, best single mixture of the same search 1.7500" in text
    # books: weight 0.3 in the 640-token quality phase -> 0.3 * 640 / books tokens epochs.
    books = next(d for d in catalogue.domains if d.name == "books")
    row = next(line for line in text.splitlines() if line.startswith("| books |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:3] == ["0.0000", "0.3000"]
    assert float(cells[4]) == pytest.approx(0.3 * 640 / books.num_tokens, abs=1e-3)
    assert float(cells[5]) == pytest.approx(0.3 * 640 / books.num_tokens, abs=1e-3)


def test_schedule_weights_file_is_read_strictly(tmp_path: Path) -> None:
    """The evaluate stage reads the schedule's best single mixture back from the run's
    weights.yaml: a duplicate key there is an error naming the file, not the last value."""
    from regmix_plugin.stages import _load_yaml_doc

    path = tmp_path / "weights.yaml"
    assert _load_yaml_doc(path) == {}
    path.write_text("schedule:\n  best_single_mixture: {a: 0.5, b: 0.5}\nschedule: {}\n")
    with pytest.raises(ConfigError, match=r"weights\.yaml"):
        _load_yaml_doc(path)
    path.write_text("schedule:\n  best_single_mixture: {a: 0.5, b: 0.5}\n")
    assert _load_yaml_doc(path)["schedule"]["best_single_mixture"] == {"a": 0.5, "b": 0.5}


def test_weights_files_never_hold_yaml_anchors() -> None:
    """A schedule's weights.yaml may hold the chosen weights twice (the single best mixture is
    a phase's): written out twice, never as an anchor and alias whose presence depends on
    which values happen to be one object."""
    from regmix_plugin.config import plain_yaml

    w = {"a": 0.25, "b": 0.75}
    doc = {"weights": w, "schedule": {"mixtures": {"p1": w, "p2": dict(w)}}}
    text = plain_yaml(doc)
    assert "&" not in text and "*" not in text
    assert yaml.safe_load(text) == doc
    assert text == plain_yaml(
        {"weights": dict(w), "schedule": {"mixtures": {"p1": dict(w), "p2": dict(w)}}}
    )
