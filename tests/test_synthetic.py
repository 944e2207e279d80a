"""The planted-optimum corpus: real .bin/.idx files, and an optimum at the hidden weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from megatron.core.datasets.indexed_dataset import IndexedDataset

from regmix_plugin.errors import ConfigError
from regmix_plugin.synthetic import SyntheticConfig, generate, target_cross_entropy

CFG = SyntheticConfig(
    domains={"a": 60, "b": 30, "c": 20},
    hidden_weights={"a": 0.2, "b": 0.5, "c": 0.3},
    vocab_size=32,
    mean_document_tokens=40,
    num_target_documents=50,
)


def test_writes_readable_megatron_files_and_is_deterministic(tmp_path: Path) -> None:
    corpus = generate(CFG, tmp_path / "one")
    again = generate(CFG, tmp_path / "two")
    for name, prefix in corpus.prefixes.items():
        ds = IndexedDataset(prefix)
        assert int(ds.sequence_lengths.sum()) == corpus.num_tokens[name]
        assert len(ds) == CFG.domains[name]
        assert int(max(ds[i].max() for i in range(len(ds)))) < CFG.vocab_size
        assert (
            Path(f"{prefix}.bin").read_bytes() == Path(f"{again.prefixes[name]}.bin").read_bytes()
        )
    assert len(IndexedDataset(corpus.target_prefix)) == CFG.num_target_documents


def test_hidden_weights_minimise_the_ideal_target_loss() -> None:
    best = target_cross_entropy(CFG, CFG.hidden_weights)
    rng = np.random.default_rng(0)
    for _ in range(20):
        w = rng.dirichlet(np.ones(3))
        assert target_cross_entropy(CFG, dict(zip("abc", w, strict=True))) > best


def test_rejects_inconsistent_hidden_weights() -> None:
    with pytest.raises(ValueError, match="give one hidden weight per domain"):
        SyntheticConfig(domains={"a": 1, "b": 1}, hidden_weights={"a": 1.0})
    with pytest.raises(ValueError, match="sum to 1"):
        SyntheticConfig(domains={"a": 1, "b": 1}, hidden_weights={"a": 0.7, "b": 0.7})
    with pytest.raises(ConfigError, match="reserved"):
        generate(
            SyntheticConfig(
                domains={"target": 5, "b": 5}, hidden_weights={"target": 0.5, "b": 0.5}
            ),
            Path("/nonexistent-never-written"),
        )
