"""Emitted blend configs, checked by building megatron-core's datasets from each of them.

Every Megatron-format file is parsed the way its consumer parses it (Megatron-LM's argument
handling is ``get_blend_from_list`` over the whitespace-split text), then megatron-core's
``GPTDatasetConfig`` and ``BlendedMegatronDatasetBuilder`` build the datasets over the real
``.bin/.idx`` files, and the blend they realise is compared with the mixture. Megatron-Bridge
0.3.1 does not install here (it needs Transformer Engine); its ``GPTDatasetConfig`` subclasses
megatron-core's, so its files are checked by building megatron-core's config from them.
"""

from __future__ import annotations

import json
import runpy
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from regmix_plugin import cli, stages
from regmix_plugin.domains import load_catalogue
from regmix_plugin.emit import EmitConfig, emit_blends
from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.mixtures import mixture_id
from regmix_plugin.study import StudyConfig, load_study

SPLIT = "80,20,0"  # tiny corpora: a test split of 0.1% would hold no document
WEIGHTS = {"web": 0.5, "code": 0.3, "books": 0.0, "math": 0.2}


@pytest.fixture
def study(tmp_path, make_corpus):
    """Four domains over five prefixes (web has two); books is capped at 1 epoch."""
    make_corpus(
        {"web_a": 60, "web_b": 30, "code": 50, "books": 30, "math": 40, "heldout": 20},
        mean_len=24,
    )
    cfg = {
        "run_dir": "run",
        "domains": {
            "num_target_tokens": 12_000,
            "max_epochs": 4,
            "entries": [
                {"name": "web", "prefixes": ["data/web_*_text_document"]},
                {"name": "code", "prefixes": ["data/code_text_document"]},
                {"name": "books", "prefixes": ["data/books_text_document"], "max_epochs": 1},
                {"name": "math", "prefixes": ["data/math_text_document"]},
            ],
        },
        "sample": {"num_mixtures": 6, "seed": 5},
        "emit": {"split": SPLIT, "valid_data_path": ["data/heldout_text_document"]},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_study(path)


def build(**blend_kw):
    """megatron-core's GPT datasets for a blend: (train, valid, test)."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer

    config = GPTDatasetConfig(
        random_seed=1,
        sequence_length=8,
        tokenizer=NullTokenizer(vocab_size=128),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        **blend_kw,
    )
    return BlendedMegatronDatasetBuilder(GPTDataset, [400, 8, 0], lambda: True, config).build()


def check_realised(dataset, expected: list[tuple[str, float]]) -> None:
    """The BlendedDataset draws from our prefixes in our proportions."""
    prefixes = [p for p, _ in expected]
    weights = np.array([w for _, w in expected])
    assert [d.dataset_path for d in dataset.datasets] == prefixes
    np.testing.assert_allclose(dataset.weights, weights / weights.sum(), rtol=1e-12)
    realised = np.bincount(dataset.dataset_index, minlength=len(prefixes)) / len(dataset)
    np.testing.assert_allclose(realised, weights, atol=3 / len(dataset))
    assert len(dataset[0]["tokens"]) == 8


def parse_megatron_lm_line(folder: Path):
    from megatron.core.datasets.utils import get_blend_from_list

    args = shlex.split((folder / "megatron_lm_data_path.txt").read_text())
    assert args[0] == "--data-path"
    return {"blend": get_blend_from_list(args[1:]), "split": SPLIT}


def parse_data_args(folder: Path):
    from megatron.core.datasets.utils import get_blend_from_list

    # Megatron-LM reads --data-args-path as f.read().split().
    return {
        "blend": get_blend_from_list((folder / "data_args.txt").read_text().split()),
        "split": SPLIT,
    }


def parse_mcore_json(folder: Path):
    doc = json.loads((folder / "mcore_blend.json").read_text())
    return {"blend": tuple(doc["blend"]), "split": doc["split"]}


def parse_mcore_py(folder: Path):
    ns = runpy.run_path(str(folder / "mcore_blend.py"))
    return {"blend": ns["BLEND"], "split": ns["SPLIT"]}


def parse_nemo1(folder: Path):
    from megatron.core.datasets.utils import get_blend_from_list

    data = yaml.safe_load((folder / "nemo1_data.yaml").read_text())["model"]["data"]
    flat = [str(x) for x in data["data_prefix"]]
    return {"blend": get_blend_from_list(flat), "split": data["splits_string"]}


def parse_nemo2_yaml(folder: Path):
    from megatron.core.datasets.utils import get_blend_from_list

    # What PreTrainingDataModule does with a flat `paths` list (checked in NeMo itself by
    # tests/test_emit_nemo.py).
    doc = yaml.safe_load((folder / "nemo2_data.yaml").read_text())
    return {"blend": get_blend_from_list(doc["paths"]), "split": doc["split"]}


def parse_bridge_yaml(folder: Path):
    doc = yaml.safe_load((folder / "bridge_dataset.yaml").read_text())["dataset"]
    return {"blend": tuple(doc["blend"]), "split": doc["split"]}


def parse_bridge_py(folder: Path):
    from megatron.core.datasets.utils import get_blend_from_list

    ns = runpy.run_path(str(folder / "bridge_dataset.py"))
    assert get_blend_from_list(ns["DATA_PATHS"]) == (list(ns["BLEND"][0]), list(ns["BLEND"][1]))
    return {"blend": ns["BLEND"], "split": ns["SPLIT"]}


def parse_nemotron(folder: Path):
    # Nemotron's DataBlend (single-blend mode): {"datasets": [{name, path, weight, ...}]}.
    entries = json.loads((folder / "data_blend_raw.json").read_text())["datasets"]
    return {
        "blend": ([e["path"] for e in entries], [e["weight"] for e in entries]),
        "split": SPLIT,
    }


PARSERS = [
    parse_megatron_lm_line,
    parse_data_args,
    parse_mcore_json,
    parse_mcore_py,
    parse_nemo1,
    parse_nemo2_yaml,
    parse_bridge_yaml,
    parse_bridge_py,
    parse_nemotron,
]


@pytest.fixture
def emitted(study, tmp_path):
    return emit_study(study, weights_path=_weights_file(tmp_path, WEIGHTS))


def emit_study(study: StudyConfig, weights_path: Path, out_dir: Path | None = None):
    """The emit stage as ``regmix emit --weights`` runs it."""
    out = out_dir or study.layout.blend_dir
    return stages.emit(study, load_catalogue(study.domains), out, weights_path=weights_path)


@pytest.fixture
def expected_blend(study):
    """WEIGHTS as a per-prefix blend, computed with megatron-core's own reader."""
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    data = study.config_dir / "data"
    members = {
        "web": ["web_a", "web_b"],
        "code": ["code"],
        "books": ["books"],
        "math": ["math"],
    }
    out = []
    for domain, names in members.items():
        prefixes = [str(data / f"{n}_text_document") for n in names]
        datasets = [IndexedDataset(p) for p in prefixes]  # keep alive: lengths view its mmap
        tokens = [int(ds.sequence_lengths.sum()) for ds in datasets]
        if WEIGHTS[domain] > 0:
            share = WEIGHTS[domain] / sum(tokens)
            out += [(p, share * t) for p, t in zip(prefixes, tokens, strict=True)]
    return out


def _weights_file(tmp_path: Path, weights: dict) -> Path:
    path = tmp_path / "weights.yaml"
    path.write_text(yaml.safe_dump({"weights": weights, "predicted_loss": 3.2}))
    return path


def test_blend_and_files(study, emitted):
    cat = load_catalogue(study.domains)
    folder = emitted.out_dir
    assert folder == study.config_dir / "run" / "blend"
    assert emitted.blend == cat.blend(WEIGHTS)
    assert all(p != cat.domain("books").prefixes[0] for p, _ in emitted.blend)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["mixture_id"] == mixture_id(WEIGHTS) == emitted.mixture_id
    assert sorted(manifest["files"]) == sorted(p.name for p in emitted.files[:-1])
    assert all(p.is_file() for p in emitted.files)
    back = yaml.safe_load((folder / "weights.yaml").read_text())
    assert back["weights"] == WEIGHTS and back["mixture_id"] == emitted.mixture_id


@pytest.mark.parametrize("parse", PARSERS, ids=lambda f: f.__name__.removeprefix("parse_"))
def test_megatron_core_builds_each_format(emitted, expected_blend, parse):
    kwargs = parse(emitted.out_dir)
    train, valid, _ = build(**kwargs)
    check_realised(train, expected_blend)
    assert valid is not None


def test_per_split_file_builds_with_blend_per_split(study, emitted, expected_blend):
    from megatron.core.datasets.utils import get_blend_from_list

    doc = json.loads((emitted.out_dir / "per_split_data_args.json").read_text())
    assert set(doc) == {"train", "valid", "test"} and doc["test"] is None
    per_split = [get_blend_from_list(doc[s]) for s in ("train", "valid", "test")]
    train, valid, test = build(blend_per_split=per_split)
    check_realised(train, expected_blend)
    heldout = str(study.config_dir / "data" / "heldout_text_document")
    assert valid.dataset_path == heldout and test is None


def test_bridge_per_split_file_builds_all_three_splits(study, tmp_path, expected_blend):
    from megatron.core.datasets.utils import get_blend_from_list

    base = study.config_dir
    heldout_prefix = str(base / "data" / "heldout_text_document")
    config = EmitConfig(
        formats=["bridge_per_split"],
        split=SPLIT,
        valid_data_path=[heldout_prefix],
        test_data_path=["1", heldout_prefix],
    )
    result = emit_blends(load_catalogue(study.domains), WEIGHTS, tmp_path / "o", config)
    doc = json.loads((result.out_dir / "bridge_per_split_data_args.json").read_text())
    assert sorted(doc) == ["test", "train", "valid"]
    # Megatron-LM/Bridge read each split with get_blend_from_list.
    per_split = [get_blend_from_list(doc[s]) for s in ("train", "valid", "test")]
    train, valid, test = build(blend_per_split=per_split)
    check_realised(train, expected_blend)
    heldout = str(Path(base) / "data" / "heldout_text_document")
    assert valid.dataset_path == heldout and test.dataset_path == heldout


def test_nemotron_blend_names_each_prefix_by_its_domain(emitted, expected_blend):
    entries = json.loads((emitted.out_dir / "data_blend_raw.json").read_text())["datasets"]
    assert [e["name"] for e in entries] == ["web-0", "web-1", "code", "math"]
    assert [e["path"] for e in entries] == [p for p, _ in expected_blend]
    assert [e["weight"] for e in entries] == pytest.approx([w for _, w in expected_blend])
    assert all(set(e) == {"name", "path", "weight"} for e in entries)


def test_epochs_and_the_over_cap_warning(study, tmp_path):
    cat = load_catalogue(study.domains)
    books = cat.domain("books")
    weights = {"web": 0.4, "code": 0.2, "books": 0.3, "math": 0.1}
    result = emit_blends(cat, weights, tmp_path / "out", EmitConfig(split=SPLIT))
    epochs = {e.name: e.epochs for e in result.epochs}
    assert epochs["books"] == pytest.approx(0.3 * 12_000 / books.num_tokens)
    assert epochs["books"] > 1  # its cap
    assert [w for w in result.warnings if "'books'" in w]
    assert not [w for w in result.warnings if "'web'" in w]
    summary = (tmp_path / "out" / "blend_summary.txt").read_text()
    assert "WARNING: domain 'books'" in summary and "OVER CAP" in summary
    for name in ("nemo1_data.yaml", "nemo2_data.py", "bridge_dataset.yaml", "mcore_blend.py"):
        assert "WARNING: domain 'books'" in (tmp_path / "out" / name).read_text()
    bigger = emit_blends(
        cat,
        weights,
        tmp_path / "out2",
        EmitConfig(split=SPLIT, num_tokens=24_000),
    )
    assert {e.name: e.epochs for e in bigger.epochs}["books"] == pytest.approx(2 * epochs["books"])


def test_a_split_part_left_without_documents_is_warned(study, tmp_path):
    cat = load_catalogue(study.domains)
    clean = emit_blends(cat, WEIGHTS, tmp_path / "ok", EmitConfig(split=SPLIT))
    assert not [w for w in clean.warnings if "split" in w]
    # Megatron's default split gives the test part 0.1% of each prefix's documents: none of
    # these 30-60-document prefixes has one. Books has weight 0 and is not in the blend.
    result = emit_blends(cat, WEIGHTS, tmp_path / "default", EmitConfig(split="969,30,1"))
    flagged = sorted(w.split()[2].rsplit("/", 1)[-1] for w in result.warnings if "test part" in w)
    assert flagged == [f"{n}_text_document" for n in ("code", "math", "web_a", "web_b")]
    assert not [w for w in result.warnings if "validation part" in w]
    assert "leaves its test part empty" in (tmp_path / "default" / "blend_summary.txt").read_text()


def test_only_the_chosen_formats_and_no_stale_files(study, emitted):
    cat = load_catalogue(study.domains)
    emit_blends(cat, WEIGHTS, emitted.out_dir, EmitConfig(formats=["nemo1"], split=SPLIT))
    names = sorted(p.name for p in emitted.out_dir.iterdir())
    assert names == ["blend_summary.txt", "manifest.json", "nemo1_data.yaml", "weights.yaml"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"web": 0.5, "code": 0.5, "books": 0.0}, "no weight for domain"),
        ({**WEIGHTS, "wiki": 0.0}, "unknown domain"),
        ({"web": 0.5, "code": 0.3, "books": 0.1, "math": 0.2}, "sum to"),
    ],
)
def test_bad_weights_write_nothing(study, tmp_path, weights, message):
    with pytest.raises(DataError, match=message):
        emit_study(study, weights_path=_weights_file(tmp_path, weights), out_dir=tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_missing_validation_prefix_writes_nothing(study, tmp_path):
    cat = load_catalogue(study.domains)
    nowhere = str(study.config_dir / "data" / "nowhere_text_document")
    config = EmitConfig(split=SPLIT, valid_data_path=[nowhere])
    with pytest.raises(DataError, match=r"emit\.valid_data_path"):
        emit_blends(cat, WEIGHTS, tmp_path / "o", config)
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"formats": ["megatron_lm", "deepspeed"]}, "unknown"),
        ({"split": "80;20"}, "split string"),
        ({"num_tokens": 0}, "num_tokens"),
    ],
)
def test_bad_emit_section(study, tmp_path, section, message):
    overrides = [f"emit.{k}={json.dumps(v)}" for k, v in section.items()]
    with pytest.raises(ConfigError, match=message):
        load_study(study.config_path, overrides)


def test_cli_emit_from_a_sampled_row_and_from_weights(study, tmp_path, capsys):
    config = str(study.config_path)
    stages.sample(study, study.layout, load_catalogue(study.domains))
    table = study.layout.mixtures
    first_id = table.read_text().splitlines()[1].split(",")[0]
    assert cli.main(["emit", config, "--mixture", first_id]) == 0
    out = capsys.readouterr().out
    assert f"mixture {first_id}" in out and "epochs for a run of 12,000 tokens" in out
    manifest = json.loads((table.parent / "blend" / "manifest.json").read_text())
    assert manifest["mixture_id"] == first_id  # a row's id is the hash of its weights
    assert cli.main(["emit", config, "--weights", str(_weights_file(tmp_path, WEIGHTS))]) == 0
    capsys.readouterr()
    assert cli.main(["emit", config, "--mixture", "000000000000"]) == 2
    assert "not in the table" in capsys.readouterr().err
    assert cli.main(["emit", config, "--mixture", first_id, "--mixtures", "nope.csv"]) == 2
    assert "does not exist" in capsys.readouterr().err
