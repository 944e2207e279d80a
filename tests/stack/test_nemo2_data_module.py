"""NeMo 2 (2.7.3): exact ratios reach the ranks only through the plugin's data module.

Runs ``hosts/nemo2_driver.py`` in the separate NeMo environment (``make nemo-env``): a NeMo-Run
experiment with a ``LocalExecutor`` (torchrun launcher, 2 gloo ranks) whose task builds a data
module from a ``run.Config`` in each rank, as a NeMo 2 recipe's ``setup`` does. With NeMo's
``PreTrainingDataModule`` and ``use_exact_ratio_blending()`` called in the launching script (the
old README advice), the ranks still get megatron-core's ``BlendedDataset``: the switch does not
reach them. With ``regmix_plugin.nemo2.ExactRatioPreTrainingDataModule`` rank 0 builds the
exact-ratio index caches, rank 1 loads them, and both see the same exact-ratio sequence.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _requirements import REPO_ROOT, require_nemo_python
from stack_helpers import HOSTS, max_prefix_deviation, rank_results

WEIGHTS = [0.5, 0.3, 0.2]


def _launch(python: Path, module: str, blend: Path, root: Path, *, old_advice: bool) -> Path:
    out = root / f"out-{module}"
    out.mkdir()
    cmd = [str(python), str(HOSTS / "nemo2_driver.py"), "--module", module]
    cmd += ["--old-advice"] if old_advice else []
    cmd += ["--paths-json", str(blend), "--out", str(out), "--cache", str(root / f"cache-{module}")]
    cmd += ["--workdir", str(root / f"nemo-run-{module}")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), str(HOSTS)])
    env["PATH"] = os.pathsep.join([str(python.parent), env.get("PATH", "")])  # its torchrun
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.requires_nemo
def test_switch_reaches_the_ranks_only_through_the_data_module(make_corpus, tmp_path) -> None:
    python = require_nemo_python()
    prefixes = make_corpus({"web": 150, "code": 150, "math": 150}, mean_len=30)
    paths = [x for w, p in zip(WEIGHTS, prefixes.values(), strict=True) for x in (str(w), p)]
    blend = tmp_path / "blend.json"
    blend.write_text(json.dumps({"paths": paths, "split": "90,10,0"}))

    # the old advice: switch on in the launching script, NeMo's data module in the ranks
    stock = rank_results(_launch(python, "stock", blend, tmp_path, old_advice=True))
    assert [r["class"] for r in stock] == ["BlendedDataset", "BlendedDataset"]

    ours = rank_results(_launch(python, "regmix", blend, tmp_path, old_advice=False))
    assert [r["world_size"] for r in ours] == [2, 2]
    assert [r["class"] for r in ours] == ["ExactRatioBlendedDataset"] * 2
    assert [r["loaded_from_cache"] for r in ours] == [False, True]
    assert ours[0]["dataset_index"] == ours[1]["dataset_index"]
    assert len(ours[0]["dataset_index"]) == 20 * 12  # max_steps x global_batch_size
    assert ours[0]["weights"] == pytest.approx(WEIGHTS)
    assert max_prefix_deviation(ours[0]["dataset_index"], WEIGHTS) < 1.0
