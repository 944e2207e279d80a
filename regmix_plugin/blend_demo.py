"""``regmix blend-demo``: exact-ratio blending through megatron-core's builder, in seconds.

Writes a small three-domain corpus of real ``.bin/.idx`` files (megatron-core's writer), builds the
blended GPT dataset with megatron-core's ``BlendedMegatronDatasetBuilder`` while
:func:`regmix_plugin.megatron.use_exact_ratio_blending` is on, reads every sample back, and prints
per domain the requested and realised samples and the largest prefix deviation of this sampler
and of megatron-core's own ``build_blending_indices`` on the same weights and size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The demo's domains: name -> (weight, number of documents).
DEMO_DOMAINS: dict[str, tuple[float, int]] = {
    "web": (0.55, 120),
    "code": (0.3, 80),
    "books": (0.15, 60),
}
DEMO_SEQ_LENGTH = 32
DEMO_NUM_SAMPLES = 2000
DEMO_VOCAB = 512


class DemoTokenizer:
    """The little of a tokenizer that megatron-core's GPT dataset reads (size and eod id)."""

    def __init__(self, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.eod = vocab_size - 1

    @property
    def unique_identifiers(self) -> dict[str, Any]:
        return {"class": "regmix_plugin.blend_demo.DemoTokenizer", "vocab": self.vocab_size}


@dataclass(frozen=True)
class DemoRow:
    """One domain of the demo's table."""

    domain: str
    weight: float
    requested: float
    realised: int
    realised_read: int
    deviation_ours: float
    deviation_megatron: float
    realised_megatron: int


def write_demo_corpus(out_dir: Path, *, seed: int = 0) -> dict[str, str]:
    """Write the demo domains as ``out_dir/data/<domain>_text_document.{bin,idx}``."""
    from regmix_plugin.corpus import write_indexed_dataset

    rng = np.random.default_rng(seed)
    band = (DEMO_VOCAB - 1) // len(DEMO_DOMAINS)
    prefixes = {}
    for i, (name, (_, num_docs)) in enumerate(DEMO_DOMAINS.items()):
        docs = [
            rng.integers(i * band, (i + 1) * band, size=int(rng.integers(16, 96)))
            for _ in range(num_docs)
        ]
        prefix = out_dir / "data" / f"{name}_text_document"
        write_indexed_dataset(prefix, docs)
        prefixes[name] = str(prefix)
    return prefixes


def _per_domain_deviation(dataset_index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    w = weights / weights.sum()
    out = np.zeros(len(w))
    n = np.arange(1, len(dataset_index) + 1, dtype=np.float64)
    for k in range(len(w)):
        dev = np.cumsum(dataset_index == k) - w[k] * n
        out[k] = float(np.max(np.abs(dev))) if len(dev) else 0.0
    return out


def run_blend_demo(out_dir: Path, *, num_samples: int = DEMO_NUM_SAMPLES) -> list[DemoRow]:
    """Build the demo blend under ``out_dir`` and return its per-domain table."""
    from megatron.core.datasets.blended_megatron_dataset_builder import (
        BlendedMegatronDatasetBuilder,
    )
    from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
    from megatron.core.datasets.helpers_cpp import build_blending_indices

    from regmix_plugin.megatron import ExactRatioBlendedDataset, use_exact_ratio_blending

    prefixes = write_demo_corpus(out_dir)
    names = list(DEMO_DOMAINS)
    weights = [DEMO_DOMAINS[n][0] for n in names]
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=DEMO_SEQ_LENGTH,
        blend=([prefixes[n] for n in names], weights),
        split="100,0,0",
        path_to_cache=str(out_dir / "cache"),
        tokenizer=DemoTokenizer(DEMO_VOCAB),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    builder = BlendedMegatronDatasetBuilder(GPTDataset, [num_samples, 0, 0], lambda: True, config)
    with use_exact_ratio_blending():
        dataset = builder.build()[0]
    if not isinstance(dataset, ExactRatioBlendedDataset):
        raise RuntimeError(
            f"the builder returned {type(dataset).__name__}, not the exact-ratio class"
        )
    # Read every sample back: the dataset id of each one, and its tokens' band.
    read = np.array([int(dataset[i]["dataset_id"]) for i in range(len(dataset))], dtype=np.int64)
    w = np.asarray(dataset.weights, dtype=np.float64)
    ours = _per_domain_deviation(read, w)
    # Megatron's own sampler on the same normalised weights and size.
    m_index = np.zeros(len(dataset), dtype=np.int16)
    m_sample = np.zeros(len(dataset), dtype=np.int64)
    build_blending_indices(m_index, m_sample, w, len(w), len(dataset), False)
    theirs = _per_domain_deviation(m_index.astype(np.int64), w)
    m_counts = np.bincount(m_index, minlength=len(w))
    read_counts = np.bincount(read, minlength=len(w))
    return [
        DemoRow(
            domain=name,
            weight=float(w[k]),
            requested=float(w[k] * len(dataset)),
            realised=int(dataset.realised_counts[k]),
            realised_read=int(read_counts[k]),
            deviation_ours=float(ours[k]),
            deviation_megatron=float(theirs[k]),
            realised_megatron=int(m_counts[k]),
        )
        for k, name in enumerate(names)
    ]


def format_table(rows: list[DemoRow]) -> str:
    """The demo's rows as a Markdown table."""
    lines = [
        "| domain | weight | requested | realised (ours) | read back | max prefix dev. (ours) "
        "| realised (Megatron) | max prefix dev. (Megatron) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.domain} | {r.weight:.3f} | {r.requested:.2f} | {r.realised} | "
            f"{r.realised_read} | {r.deviation_ours:.3f} | {r.realised_megatron} | "
            f"{r.deviation_megatron:.3f} |"
        )
    return "\n".join(lines)
