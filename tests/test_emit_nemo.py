"""NeMo 2 builds its data module from the emitted configs (in the separate NeMo environment).

NeMo 2.7.3 pins numpy < 2 and megatron-core 0.15, so it lives in its own venv (``make nemo-env``);
``tests/nemo/check_pretraining_data.py`` runs there in a subprocess, constructs
``llm.PreTrainingDataModule`` from ``nemo2_data.yaml`` and ``nemo2_data.py`` (which checks that
the ``.bin/.idx`` files exist) and prints the blend it would hand to megatron-core. Skips locally
without the venv; fails under ``REGMIX_REQUIRE_ALL=1`` (CI).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml
from _requirements import REPO_ROOT, require_nemo_python

from regmix_plugin import stages
from regmix_plugin.study import load_study

CHECK_SCRIPT = REPO_ROOT / "tests" / "nemo" / "check_pretraining_data.py"


@pytest.mark.slow
@pytest.mark.requires_nemo
def test_nemo2_pretraining_data_module_reads_the_weights_back(tmp_path, make_corpus):
    python = require_nemo_python()
    make_corpus({"web_a": 30, "web_b": 20, "code": 25, "books": 10}, mean_len=16)
    config = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 10_000,
            "entries": [
                {"name": "web", "prefixes": ["data/web_*_text_document"]},
                {"name": "code", "prefixes": ["data/code_text_document"]},
                {"name": "books", "prefixes": ["data/books_text_document"]},
            ],
        },
        "emit": {"formats": ["nemo2"], "split": "90,10,0"},
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    weights = tmp_path / "weights.yaml"
    weights.write_text(yaml.safe_dump({"weights": {"web": 0.55, "code": 0.45, "books": 0.0}}))
    study = load_study(tmp_path / "study.yaml")
    catalogue = stages.build_catalogue(study)
    result = stages.emit(study, catalogue, study.layout.blend_dir, weights_path=weights)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    proc = subprocess.run(
        [str(python), str(CHECK_SCRIPT), str(result.out_dir)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("REGMIX_RESULT "))
    built = json.loads(line.removeprefix("REGMIX_RESULT "))
    expected_prefixes = [p for p, _ in result.blend]
    expected_weights = [w for _, w in result.blend]
    assert set(built) == {"yaml_run_config", "yaml_direct", "snippet_config", "snippet_module"}
    for way, got in built.items():
        assert got["class"].endswith("PreTrainingDataModule"), way
        assert got["prefixes"] == expected_prefixes, way
        assert got["weights"] == pytest.approx(expected_weights, rel=1e-15), way
        assert got["split"] == "90,10,0", way
    assert len(expected_prefixes) == 3  # web's two prefixes and code; books (weight 0) left out
