"""A validation part or target set too small for ``proxy.num_eval_tokens`` fails before any proxy
launches (issue 18 part 4), with the same sample count megatron-core's builder finds after launch.

Real ``.bin/.idx`` files (megatron-core's writer), real ``GPTDataset`` builds for the reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent / "proxy"))
from proxy_corpus import as_study, study_dict

from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.domains import load_catalogue
from regmix_plugin.errors import DataError
from regmix_plugin.pipeline import run_pipeline
from regmix_plugin.proxy.data import build_eval_sets, check_eval_data

SEQ = 16


def _write(folder: Path, name: str, lengths: list[int]) -> str:
    prefix = folder / f"{name}_text_document"
    rng = np.random.default_rng(len(lengths))
    write_indexed_dataset(prefix, [rng.integers(0, 90, size=n) for n in lengths])
    return str(prefix)


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, str]:
    """Two domains of 20 documents of 40 tokens; a target of 5 documents of 50 tokens."""
    data = tmp_path / "data"
    return {
        "a": _write(data, "a", [40] * 20),
        "b": _write(data, "b", [40] * 20),
        "target": _write(data, "target", [50] * 5),
    }


def _study(
    corpus: dict[str, str], tmp_path: Path, num_eval_tokens: int, split: str = "80,20,0", **more
):
    domains = {k: v for k, v in corpus.items() if k != "target"}
    data = study_dict(
        domains,
        tmp_path,
        seq_length=SEQ,
        split=split,
        num_eval_tokens=num_eval_tokens,
        targets={"t": [corpus["target"]]},
    )
    return as_study({**data, **more}, tmp_path)


def _megatron_builds(study, tmp_path: Path) -> bool:
    """Whether megatron-core's builder (what each proxy runs after launch) gets enough samples."""
    try:
        build_eval_sets(study.proxy, load_catalogue(study.domains), tmp_path / "cache")
    except DataError:
        return False
    return True


def test_the_check_agrees_with_megatron_at_the_boundary(corpus, tmp_path: Path) -> None:
    # Validation part of each domain: 4 of 20 documents, 160 tokens: (160 - 1) // 16 = 9
    # samples; the target: 250 tokens, 15 samples. So 9 samples (144 tokens) fit, 10 do not.
    fits = _study(corpus, tmp_path, 9 * SEQ)
    catalogue = load_catalogue(fits.domains)
    check_eval_data(fits.proxy, catalogue)
    assert _megatron_builds(fits, tmp_path)

    too_many = _study(corpus, tmp_path, 10 * SEQ)
    with pytest.raises(DataError) as err:
        check_eval_data(too_many.proxy, catalogue)
    message = str(err.value)
    assert "proxy.num_eval_tokens" in message and "proxy.split" in message
    assert "'a'" in message and "holds 9 samples" in message and "needs 10" in message
    assert not _megatron_builds(too_many, tmp_path)


def test_a_small_target_set_is_named(corpus, tmp_path: Path) -> None:
    # A validation split of 60 % holds plenty; the target (15 samples) is what is short.
    study = _study(corpus, tmp_path, 16 * SEQ, split="40,60,0")
    with pytest.raises(DataError, match=r"proxy\.targets\.t: .* holds 15 samples .* needs 16"):
        check_eval_data(study.proxy, load_catalogue(study.domains))
    assert not _megatron_builds(study, tmp_path)


def test_regmix_run_stops_before_the_sweep_launches(corpus, tmp_path: Path) -> None:
    more = {"sample": {"num_mixtures": 8, "seed": 0}, "sweep": {"launcher": "local"}}
    study = _study(corpus, tmp_path, 10 * SEQ, **more)
    with pytest.raises(DataError, match=r"proxy\.num_eval_tokens"):
        run_pipeline(study, stop="sweep")
    # Checked before anything is written or run: the data is there (no synthetic stage).
    run_dir = Path(study.run_dir)
    assert not run_dir.exists() or not any(p.is_file() for p in run_dir.rglob("*"))


def test_the_larger_transfer_proxy_is_checked_before_the_sweep(tmp_path: Path) -> None:
    """transfer.proxy may lengthen the sequences. Each domain here has two prefixes whose
    validation parts (5 of 10 documents of 20 tokens: 100 tokens each) hold samples of 16
    tokens but none of 120: the transfer stage would find that out after the whole sweep."""
    data = tmp_path / "data"
    prefixes = {f"{d}{i}": _write(data, f"{d}{i}", [20] * 10) for d in "ab" for i in (1, 2)}
    target = _write(data, "target", [50] * 5)
    study_data = study_dict(
        {"a": prefixes["a1"], "b": prefixes["b1"]},
        tmp_path,
        seq_length=SEQ,
        split="50,50,0",
        num_eval_tokens=121,
        targets={"t": [target]},
    )
    for entry in study_data["domains"]["entries"]:
        entry["prefixes"] = [prefixes[entry["name"] + "1"], prefixes[entry["name"] + "2"]]
    more = {
        "sample": {"num_mixtures": 8, "seed": 0},
        "sweep": {"launcher": "local"},
        "transfer": {"target": "target_loss/t", "proxy": {"seq_length": 120}},
    }
    study = as_study({**study_data, **more}, tmp_path)
    check_eval_data(study.proxy, load_catalogue(study.domains))  # the sweep's own proxy fits
    with pytest.raises(DataError, match=r"^transfer\.proxy .*'a' has no validation split"):
        run_pipeline(study, stop="sweep")
    run_dir = Path(study.run_dir)
    assert not run_dir.exists() or not any(p.is_file() for p in run_dir.rglob("*"))
