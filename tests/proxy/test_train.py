"""Real proxy training on the CPU from real ``.bin/.idx`` files (a few seconds per proxy)."""

from __future__ import annotations

import copy as copy_module
import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from proxy_corpus import study_dict, train

from regmix_plugin.config import from_dict
from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.proxy.train import METRICS_FILE, proxy_timings

MIX = {"a": 0.6, "b": 0.3, "c": 0.1}


def copy_study(study: dict, **proxy) -> dict:
    """A deep copy of ``study`` with ``proxy`` keys changed."""
    out = copy_module.deepcopy(study)
    out["proxy"].update(proxy)
    return out


@pytest.fixture(scope="module")
def trained(band_corpus, tmp_path_factory):
    """One proxy trained on ``MIX``: (study, metrics, out dir). Tests must not change it."""
    root = tmp_path_factory.mktemp("trained")
    study = study_dict(band_corpus, root, targets={"band_a": [band_corpus["a"]]})
    out = root / "out"
    return study, train(study, MIX, "mix-1", out), out


def test_metrics_json_has_the_contract(trained) -> None:
    study, metrics, out = trained
    on_disk = json.loads((out / METRICS_FILE).read_text())
    assert on_disk == json.loads(json.dumps(metrics))
    assert metrics["mixture_id"] == "mix-1"
    assert metrics["weights"] == MIX
    cfg = from_dict(ProxyConfig, study["proxy"], "proxy")
    assert metrics["num_tokens_trained"] == cfg.num_steps * cfg.tokens_per_step
    assert set(metrics["metrics"]) == {
        "val_loss/a",
        "val_loss/b",
        "val_loss/c",
        "target_loss/band_a",
    }
    assert all(math.isfinite(v) for v in metrics["metrics"].values())
    steps = [s for s, _ in metrics["train_loss"]]
    assert steps == sorted(steps) and steps[-1] == cfg.num_steps
    # Timings live in the run's timings log, not in metrics.json (artifacts are byte-identical).
    assert not {"wall_time_s", "train_time_s", "tokens_per_second"} & set(metrics)
    timing = proxy_timings(out)
    assert timing["wall_time_s"] > 0 and timing["tokens_per_second"] > 0
    assert metrics["num_eval_tokens"]["val_loss/a"] == cfg.num_eval_tokens
    assert metrics["device"] == "cpu" and metrics["world_size"] == 1
    assert (out / "checkpoint" / "state.pt").is_file()


def test_realised_tokens_match_the_mixture(trained) -> None:
    _, metrics, _ = trained
    realised = metrics["realised_tokens"]
    total = sum(realised.values())
    assert total == metrics["num_tokens_trained"]
    seq = metrics["config"]["seq_length"]
    for domain, w in MIX.items():
        # Exact ratios: within one sample of w * n for every domain.
        assert abs(realised[domain] - w * total) <= seq, (domain, realised)


def test_proxy_learns(trained) -> None:
    study, metrics, _ = trained
    curve = [loss for _, loss in metrics["train_loss"]]
    assert curve[-1] < curve[0] - 0.5
    uniform = math.log(study["proxy"]["vocab_size"])  # an untrained model predicts about uniformly
    for key, value in metrics["metrics"].items():
        assert value < uniform - 0.5, (key, value, uniform)
    # The target is domain a's whole prefix: its loss is close to a's validation loss.
    assert metrics["metrics"]["target_loss/band_a"] == pytest.approx(
        metrics["metrics"]["val_loss/a"], abs=0.1
    )


def test_torch_distributed_and_patches_are_torn_down(trained) -> None:
    from megatron.core import parallel_state

    assert not dist.is_initialized()
    assert not parallel_state.model_parallel_is_initialized()
    assert torch.cuda.current_device.__module__.startswith("torch")


def test_same_seed_gives_the_same_losses(trained, tmp_path: Path) -> None:
    study, metrics, _ = trained
    hook = sys.excepthook
    again = train(study, MIX, "mix-1", tmp_path / "again")
    assert sys.excepthook is hook  # torch's "[rank0]: " excepthook wrapper does not pile up
    assert again["metrics"] == metrics["metrics"]
    assert again["train_loss"] == metrics["train_loss"]
    assert again["realised_tokens"] == metrics["realised_tokens"]


def test_more_weight_lowers_that_domains_loss(trained, tmp_path: Path) -> None:
    study, metrics, _ = trained  # a: 0.6, b: 0.3, c: 0.1
    light_a = train(study, {"a": 0.05, "b": 0.35, "c": 0.6}, "light", tmp_path / "light")
    assert metrics["metrics"]["val_loss/a"] < light_a["metrics"]["val_loss/a"]
    assert metrics["metrics"]["val_loss/c"] > light_a["metrics"]["val_loss/c"]


def test_rerun_with_complete_metrics_does_nothing(trained) -> None:
    study, _, out = trained
    path = out / METRICS_FILE
    before = path.stat().st_mtime_ns
    again = train(study, MIX, "mix-1", out)
    assert again == json.loads(path.read_text())
    assert path.stat().st_mtime_ns == before


def test_changed_config_retrains(trained, tmp_path: Path) -> None:
    study, metrics, out = trained
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    changed = copy_study(study, seed=7)
    again = train(changed, MIX, "mix-1", copy)
    assert again["fingerprint"] != metrics["fingerprint"]
    assert again["resumed_from_step"] == 0  # the old checkpoint belongs to the old config
    assert again["metrics"] != metrics["metrics"]
    assert json.loads((copy / METRICS_FILE).read_text())["fingerprint"] == again["fingerprint"]


def test_preset_parameter_count_matches_the_megatron_model() -> None:
    from regmix_plugin.proxy.model import build_model
    from regmix_plugin.proxy.runtime import proxy_runtime

    cfg = from_dict(ProxyConfig, {"vocab_size": 50, "preset": "tiny"}, "proxy")
    with proxy_runtime(cfg) as rt:
        model = build_model(cfg.model_preset(), cfg, rt.device)
        assert sum(p.numel() for p in model.parameters()) == cfg.model_preset().num_parameters(50)
    assert not dist.is_initialized()


# -- bad input ---------------------------------------------------------------------------------


def test_mixture_with_an_unknown_domain(make_study, tmp_path: Path) -> None:
    study = make_study()
    with pytest.raises(DataError, match=r"unknown domain\(s\) \['d'\]"):
        train(study, {"a": 0.5, "d": 0.5}, "x", tmp_path / "x")
    with pytest.raises(DataError, match="sum to"):
        train(study, {"a": 0.5, "b": 0.3, "c": 0.1}, "x", tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_domain_with_no_tokens(make_study, tmp_path: Path) -> None:
    study = make_study()
    empty = tmp_path / "data" / "empty_text_document"
    write_indexed_dataset(empty, [])
    study["domains"]["entries"].append({"name": "empty", "prefixes": [str(empty)]})
    with pytest.raises(DataError, match=r"'empty'.*no tokens"):
        train(study, {**MIX, "empty": 0.0}, "x", tmp_path / "x")


def test_domain_with_no_validation_split(make_study, tmp_path: Path) -> None:
    study = make_study(docs={"a": 200, "b": 200, "c": 2})
    with pytest.raises(DataError) as info:
        train(study, MIX, "x", tmp_path / "x")
    message = str(info.value)
    assert "domain 'c' has no validation split" in message and "proxy.split" in message
    assert not dist.is_initialized()


def test_validation_split_smaller_than_num_eval_tokens(make_study, tmp_path: Path) -> None:
    study = make_study(num_eval_tokens=10**6)
    with pytest.raises(DataError, match=r"proxy\.num_eval_tokens = 1000000"):
        train(study, MIX, "x", tmp_path / "x")


def test_sequence_length_the_data_cannot_fill(make_study, tmp_path: Path) -> None:
    study = make_study(
        docs={"a": 200, "b": 200, "c": 4},
        seq_length=256,
        num_eval_tokens=257,
        num_tokens=256 * 16 * 2,
        split="60,40,0",
    )
    with pytest.raises(DataError) as info:
        train(study, MIX, "x", tmp_path / "x")
    message = str(info.value)
    assert "domain 'c'" in message and "proxy.seq_length" in message


def test_token_ids_above_the_vocabulary(make_study, tmp_path: Path) -> None:
    study = make_study(vocab_size=40)
    with pytest.raises(DataError, match=r"proxy\.vocab_size is 40"):
        train(study, MIX, "x", tmp_path / "x")
    assert not (tmp_path / "x" / METRICS_FILE).exists()


def test_preset_that_does_not_exist(make_study, tmp_path: Path) -> None:
    study = make_study(preset="huge")
    with pytest.raises(ConfigError, match=r"proxy\.preset 'huge' does not exist"):
        train(study, MIX, "x", tmp_path / "x")


def test_damaged_checkpoint_names_the_file(band_corpus, tmp_path: Path) -> None:
    study = study_dict(band_corpus, tmp_path)
    folder = tmp_path / "out" / "checkpoint"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"not a checkpoint")
    leftover = folder / ".state.pt.x1y2.tmp"  # what a killed atomic write leaves
    leftover.write_bytes(b"partial")
    with pytest.raises(DataError, match=r"state\.pt cannot be read .*delete it"):
        train(study, MIX, "mix-1", tmp_path / "out")
    assert not leftover.exists()
    assert not dist.is_initialized()
