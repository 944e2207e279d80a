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
from regmix_plugin.errors import ConfigError
from regmix_plugin.megatron import use_exact_ratio_blending
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
