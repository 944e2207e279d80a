"""``regmix collect`` reads exactly what ``megatron.training`` writes for named validation sets.

Runs in the Python 3.12 environment (megatron-core 0.19.2, whose wheel ships
``megatron/training``). The log lines and TensorBoard scalars come from Megatron-LM's own
``evaluate_and_print_results`` (its formatting, its ``print_rank_last``, its
``writer.add_scalar`` calls into a real ``SummaryWriter``); only ``evaluate`` -- the forward
passes over a model, which need CUDA in ``megatron.training`` -- is replaced by a function that
returns the loss each validation set is given here, so that the parsed values can be compared
with known ones.
"""

from __future__ import annotations

import math
from argparse import Namespace
from pathlib import Path

import pytest

from regmix_plugin.sweep.config import CollectSettings
from regmix_plugin.sweep.parsers import parse_megatron_log, run_metrics

pytestmark = pytest.mark.stack312


@pytest.fixture
def megatron_training(monkeypatch):
    from _requirements import require_or_skip

    try:
        import megatron.training.global_vars as global_vars
        import megatron.training.training as training
    except ImportError as exc:
        require_or_skip(False, f"megatron.training is not importable (the 3.12 env has it): {exc}")
    monkeypatch.setattr(global_vars, "_GLOBAL_ARGS", None)
    monkeypatch.setattr(global_vars, "_GLOBAL_TENSORBOARD_WRITER", None)
    monkeypatch.setattr(global_vars, "_GLOBAL_WANDB_WRITER", None)
    return training, global_vars


def _evaluate_all(training, global_vars, monkeypatch, writer, names, rounds):
    """Megatron-LM's evaluate_and_print_results over ``rounds``: [(prefix, iteration, losses)]."""
    import torch

    global_vars.set_args(
        Namespace(
            multiple_validation_sets=bool(names),
            validation_set_names=list(names) or None,
            eval_iters=[1] * len(names) if names else 1,
            full_validation=False,
            log_validation_ppl_to_tensorboard=True,
            consumed_train_samples=0,
        )
    )
    monkeypatch.setattr(global_vars, "_GLOBAL_TENSORBOARD_WRITER", writer)
    for prefix, iteration, losses in rounds:
        given = iter(losses)
        monkeypatch.setattr(
            training,
            "evaluate",
            lambda *a, given=given, **k: ({"lm loss": torch.tensor(next(given))}, None, False),
        )
        iterators = [None] * len(losses) if names else None
        training.evaluate_and_print_results(
            prefix, None, iterators, None, iteration, None, None, write_to_tensorboard=True
        )


def test_named_validation_sets(megatron_training, monkeypatch, capsys, tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    training, global_vars = megatron_training
    names = ["web", "code-py", "math_text_document"]
    run = tmp_path / "runs" / "mix1"
    writer = SummaryWriter(str(run / "tensorboard"))
    rounds = [
        ("iteration 50", 50, [4.25, 5.5, 6.125]),
        ("iteration 100", 100, [3.5, 4.75, 5.25]),
        ("iteration 100 on validation set", 100, [3.4375, 4.6875, 5.1875]),  # end of training
        ("iteration 100 on test set", 100, [9.0, 9.5, 9.75]),
    ]
    _evaluate_all(training, global_vars, monkeypatch, writer, names, rounds)
    writer.close()
    log = capsys.readouterr().out
    assert " validation-code-py loss at iteration 100 on validation set | lm loss value: " in log
    (run / "train.log").write_text(log)

    settings = CollectSettings(dataset_names={"code-py": "code", "math_text_document": "math"})
    final = dict(zip(["web", "code", "math"], rounds[2][2], strict=True))
    found = parse_megatron_log(log, settings)
    assert {k: v for k, (_, v) in found.items()} == dict(zip(names, rounds[2][2], strict=True))
    assert {k: s for k, (s, _) in found.items()} == dict.fromkeys(names, 100.0)
    # TensorBoard: tags `lm loss validation-<name>`. At the last iteration Megatron-LM writes the
    # periodic, the end-of-training and the test evaluation under the same tag and step: the
    # first of them is taken (a validation value), never the test set's.
    metrics, sources = run_metrics(run, settings)
    assert len(sources) == 2
    assert sorted(metrics) == ["val_loss/code", "val_loss/math", "val_loss/web"]
    periodic = dict(zip(["web", "code", "math"], rounds[1][2], strict=True))
    for domain in final:
        assert metrics[f"val_loss/{domain}"] == pytest.approx(periodic[domain], rel=1e-6)


def test_single_validation_set(megatron_training, monkeypatch, capsys, tmp_path: Path) -> None:
    training, global_vars = megatron_training
    rounds = [("iteration 10", 10, [5.0]), ("iteration 20", 20, [4.0625])]
    _evaluate_all(training, global_vars, monkeypatch, None, [], rounds)
    log = capsys.readouterr().out
    found = parse_megatron_log(log, CollectSettings())
    assert found == {None: (20.0, 4.0625)}
    assert f"lm loss PPL: {math.exp(4.0625):.6E}" in log
