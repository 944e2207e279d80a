"""Exact-ratio blends in Megatron-Bridge recipes: a ``DatasetProvider`` built from an emitted blend.

Megatron-Bridge (0.6.x) builds a recipe's datasets through ``get_dataset_provider(cfg.dataset)``;
an object that implements its public ``DatasetProvider`` contract (``megatron.bridge.data.base``:
a ``build_datasets(context)`` method) is built by calling that method in every rank's process.
:class:`ExactRatioGPTDatasetProvider` does so with megatron-core's own builder, whose blended
datasets it makes :class:`~regmix_plugin.megatron.ExactRatioBlendedDataset` (a builder subclass,
no module patch). Set it from Python in the training script (Bridge instantiates only classes
from its own namespaces from YAML/CLI overrides)::

    from regmix_plugin.bridge import ExactRatioGPTDatasetProvider
    cfg = llama32_1b_pretrain_config(...)          # any GPT recipe
    cfg.dataset = ExactRatioGPTDatasetProvider.from_emitted(
        "runs/my-study/blend", sequence_length=cfg.model.seq_length, path_to_cache="/shared/cache"
    )
    pretrain(cfg, forward_step)

``from_emitted`` reads ``bridge_per_split_data_args.json`` (train/valid/test lists) when the
folder has one with validation data, else ``mcore_blend.json`` (one blend and a split string).
Importing this module imports Megatron-Bridge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from megatron.bridge.data.base import DatasetBuildContext, DatasetProvider
from megatron.core.datasets.blended_dataset import BlendedDataset
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.datasets.utils import get_blend_from_list

from regmix_plugin.errors import ConfigError, DataError
from regmix_plugin.megatron import ExactRatioBlendedDataset

__all__ = ["ExactRatioDatasetBuilder", "ExactRatioGPTDatasetProvider"]

BlendSpec = tuple[list[str], list[float] | None]


class ExactRatioDatasetBuilder(BlendedMegatronDatasetBuilder):
    """megatron-core's builder, constructing the exact-ratio class where it would blend."""

    @staticmethod
    def build_generic_dataset(
        cls: Any, is_built_on_rank: Any, synchronize_ranks: bool, *args: Any
    ) -> Any:
        """As megatron-core's, with ``ExactRatioBlendedDataset`` for ``BlendedDataset``."""
        if cls is BlendedDataset:
            cls = ExactRatioBlendedDataset
        return BlendedMegatronDatasetBuilder.build_generic_dataset(
            cls, is_built_on_rank, synchronize_ranks, *args
        )


@dataclass(kw_only=True)
class ExactRatioGPTDatasetProvider(DatasetProvider):
    """Megatron-Bridge dataset provider: GPT datasets of a blend, blended with exact ratios."""

    sequence_length: int
    """Tokens per sample (the model's ``seq_length``)."""

    blend: BlendSpec | None = None
    """``(prefixes, weights)`` of one blend that ``split`` divides; None: ``blend_per_split``."""

    blend_per_split: list[BlendSpec | None] | None = None
    """``[train, valid, test]`` blends (None: that split is not built); None with ``blend``."""

    split: str | None = "969,30,1"
    """Megatron split string for ``blend`` (ignored with ``blend_per_split``)."""

    random_seed: int = 1234
    """Seed of megatron-core's per-dataset shuffles."""

    path_to_cache: str | None = None
    """Index cache folder every rank sees (rank 0 builds, the others load); None: no cache."""

    mid_level_dataset_surplus: float = 0.005
    """megatron-core's per-dataset oversampling margin of a blend."""

    reset_position_ids: bool = False
    """megatron-core ``GPTDatasetConfig.reset_position_ids``."""

    reset_attention_mask: bool = False
    """megatron-core ``GPTDatasetConfig.reset_attention_mask``."""

    eod_mask_loss: bool = False
    """megatron-core ``GPTDatasetConfig.eod_mask_loss``."""

    extra: dict[str, Any] = field(default_factory=dict)
    """More ``GPTDatasetConfig`` keyword arguments (for example ``create_attention_mask``)."""

    def __post_init__(self) -> None:
        if (self.blend is None) == (self.blend_per_split is None):
            raise ConfigError(
                "ExactRatioGPTDatasetProvider: give exactly one of blend or blend_per_split"
            )
        if self.blend_per_split is not None and len(self.blend_per_split) != 3:
            raise ConfigError(
                "ExactRatioGPTDatasetProvider.blend_per_split needs [train, valid, test]"
            )
        if self.sequence_length <= 0:
            raise ConfigError(f"sequence_length must be > 0, got {self.sequence_length}")

    @classmethod
    def from_emitted(cls, folder: str | Path, **kwargs: Any) -> ExactRatioGPTDatasetProvider:
        """The provider of a ``regmix emit`` folder (see the module docstring for which file)."""
        folder = Path(folder)
        per_split = folder / "bridge_per_split_data_args.json"
        if per_split.is_file():
            doc = json.loads(per_split.read_text(encoding="utf-8"))
            if doc.get("valid") is not None:
                splits = [get_blend_from_list(doc.get(s)) for s in ("train", "valid", "test")]
                return cls(blend_per_split=splits, split=None, **kwargs)
        mcore = folder / "mcore_blend.json"
        if not mcore.is_file():
            raise DataError(
                f"{folder} holds neither bridge_per_split_data_args.json (with valid data) nor "
                "mcore_blend.json: run `regmix emit` with format bridge_per_split or mcore"
            )
        doc = json.loads(mcore.read_text(encoding="utf-8"))
        prefixes, weights = doc["blend"]
        return cls(blend=(list(prefixes), list(weights)), split=doc["split"], **kwargs)

    def gpt_config(self, tokenizer: Any) -> GPTDatasetConfig:
        """megatron-core's ``GPTDatasetConfig`` of this provider."""
        return GPTDatasetConfig(
            random_seed=self.random_seed,
            sequence_length=self.sequence_length,
            blend=self.blend,
            blend_per_split=self.blend_per_split,
            split=self.split if self.blend is not None else None,
            path_to_cache=self.path_to_cache,
            mid_level_dataset_surplus=self.mid_level_dataset_surplus,
            tokenizer=tokenizer,
            reset_position_ids=self.reset_position_ids,
            reset_attention_mask=self.reset_attention_mask,
            eod_mask_loss=self.eod_mask_loss,
            **self.extra,
        )

    def build_datasets(self, context: DatasetBuildContext) -> tuple[Any, Any, Any]:
        """Train, validation and test datasets of the sizes Bridge asks for (in this rank)."""
        if context.tokenizer is None:
            raise ConfigError(
                "ExactRatioGPTDatasetProvider needs the run's tokenizer (Bridge passes it in "
                "the build context); set cfg.tokenizer"
            )
        sizes = [context.train_samples, context.valid_samples, context.test_samples]
        builder = ExactRatioDatasetBuilder(
            GPTDataset, sizes, lambda: True, self.gpt_config(context.tokenizer)
        )
        train, valid, test = builder.build()
        return train, valid, test
