"""Shared fixtures: real ``.bin/.idx`` corpora written by megatron-core's writer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from regmix_plugin.corpus import write_indexed_dataset


def _documents(
    rng: np.random.Generator, num_docs: int, vocab: int, lo: int, hi: int, mean_len: int
):
    for _ in range(num_docs):
        n = int(rng.integers(max(1, mean_len // 2), mean_len * 2))
        yield rng.integers(lo, hi, size=n)


@pytest.fixture
def make_corpus(tmp_path: Path) -> Callable[..., dict[str, str]]:
    """Factory: ``make_corpus({"a": 50, "b": 80}, vocab=128)`` -> ``{"a": prefix, ...}``.

    Each domain gets its own band of token ids (so the domain of a sample is recognisable) and
    the given number of documents of about ``mean_len`` tokens.
    """

    def make(
        domains: dict[str, int], *, vocab: int = 128, mean_len: int = 64, seed: int = 0
    ) -> dict[str, str]:
        rng = np.random.default_rng(seed)
        band = max(1, vocab // max(1, len(domains)))
        out = {}
        for i, (name, num_docs) in enumerate(domains.items()):
            prefix = tmp_path / "data" / f"{name}_text_document"
            lo, hi = i * band, min(vocab, (i + 1) * band)
            write_indexed_dataset(prefix, _documents(rng, num_docs, vocab, lo, hi, mean_len))
            out[name] = str(prefix)
        return out

    return make
