"""Megatron-Bridge 0.6.2: ``ExactRatioGPTDatasetProvider`` through Bridge's own dataset building.

Runs in the Python 3.12 environment. ``regmix emit`` writes the blend; ``hosts/bridge_host.py``
sets ``cfg.dataset`` to the provider built from it and builds the datasets with Bridge's
``get_dataset_provider`` (its public ``DatasetProvider`` route, no monkeypatch) and
``build_train_valid_test_datasets``, on two gloo ranks started by torchrun: rank 0 builds the
exact-ratio index caches, rank 1 loads them, both see the same sequence. An IMPORT STAND-IN
replaces ``megatron.bridge.peft.lora_layers`` (it imports Transformer Engine, which does not
build without CUDA; the data path never runs it): see ``hosts/te_standin.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from stack_helpers import HOSTS, max_prefix_deviation, rank_results, torchrun

sys.path.insert(0, str(HOSTS))  # te_standin

from regmix_plugin import stages
from regmix_plugin.study import load_study

pytestmark = pytest.mark.stack312


@pytest.fixture
def bridge_importable():
    import importlib.util

    from _requirements import require_or_skip

    found = importlib.util.find_spec("megatron.bridge") is not None
    require_or_skip(found, "Megatron-Bridge is not installed (make py312-env)")


@pytest.fixture
def emitted(make_corpus, tmp_path: Path) -> Path:
    make_corpus({"web": 150, "code": 150, "math": 150, "heldout": 40}, mean_len=30)
    config = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 10_000,
            "entries": [
                {"name": n, "prefixes": [f"data/{n}_text_document"]}
                for n in ("web", "code", "math")
            ],
        },
        "emit": {
            "formats": ["mcore", "bridge_per_split"],
            "valid_data_path": ["data/heldout_text_document"],
        },
    }
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    weights = tmp_path / "weights.yaml"
    weights.write_text(yaml.safe_dump({"weights": {"web": 0.5, "code": 0.3, "math": 0.2}}))
    study = load_study(tmp_path / "study.yaml")
    catalogue = stages.build_catalogue(study)
    return stages.emit(study, catalogue, study.layout.blend_dir, weights_path=weights).out_dir


@pytest.mark.slow
def test_two_ranks_through_bridge(bridge_importable, emitted: Path, tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir()
    host = str(HOSTS / "bridge_host.py")
    args = ["--emitted", str(emitted), "--cache", str(cache), "--out", str(out)]
    proc = torchrun(sys.executable, [host, *args])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-4000:]
    rank0, rank1 = rank_results(out)
    assert rank0["class"] == rank1["class"] == "ExactRatioBlendedDataset"
    assert not rank0["loaded_from_cache"] and rank1["loaded_from_cache"]
    assert rank0["dataset_index"] == rank1["dataset_index"]
    # Bridge asked for train_iters x global_batch_size samples
    assert len(rank0["dataset_index"]) == 20 * 12
    data = Path(emitted).parents[1] / "data"
    assert rank0["prefixes"] == [str(data / f"{n}_text_document") for n in ("web", "code", "math")]
    assert rank0["weights"] == pytest.approx([0.5, 0.3, 0.2])
    assert max_prefix_deviation(rank0["dataset_index"], [0.5, 0.3, 0.2]) < 1.0
    # the per-split file's validation set (held out), and no test split (null in the file)
    assert rank0["valid_prefix"] == str(data / "heldout_text_document")
    assert rank0["test"] is None


def test_from_emitted_reads_the_blend_files(bridge_importable, emitted: Path, tmp_path) -> None:
    import json

    import te_standin  # the import stand-in for Bridge's LoRA module (see the module docstring)

    te_standin.install()
    from megatron.bridge.data.base import DatasetBuildContext, DatasetProvider

    from regmix_plugin.bridge import ExactRatioGPTDatasetProvider
    from regmix_plugin.errors import ConfigError, DataError

    per_split = ExactRatioGPTDatasetProvider.from_emitted(emitted, sequence_length=8)
    assert isinstance(per_split, DatasetProvider)  # what Bridge's get_dataset_provider checks
    doc = json.loads((emitted / "bridge_per_split_data_args.json").read_text())
    assert per_split.blend is None and per_split.split is None
    assert per_split.blend_per_split[0] == (
        doc["train"][1::2],
        [float(w) for w in doc["train"][::2]],
    )
    assert per_split.blend_per_split[2] is None
    # without validation data in the per-split file: mcore_blend.json and its split
    (emitted / "bridge_per_split_data_args.json").unlink()
    single = ExactRatioGPTDatasetProvider.from_emitted(emitted, sequence_length=8)
    mcore = json.loads((emitted / "mcore_blend.json").read_text())
    assert single.blend == tuple(mcore["blend"]) and single.split == mcore["split"]
    with pytest.raises(DataError, match="regmix emit"):
        ExactRatioGPTDatasetProvider.from_emitted(tmp_path / "nowhere", sequence_length=8)
    with pytest.raises(ConfigError, match="tokenizer"):
        single.build_datasets(DatasetBuildContext(train_samples=8, valid_samples=0, test_samples=0))
