"""Exact-ratio blends in NeMo 2 recipes: a data module whose ranks switch the sampler on themselves.

NeMo-Run starts each rank as a fresh process from a serialised config, so calling
:func:`~regmix_plugin.megatron.use_exact_ratio_blending` in the script that builds and launches
the recipe never reaches the ranks. :class:`ExactRatioPreTrainingDataModule` is NeMo 2's
``llm.PreTrainingDataModule`` whose ``build`` (run in every rank by ``setup``) switches exact
ratios on first; everything else is NeMo's. Use it wherever a recipe takes the data module::

    import nemo_run as run
    from regmix_plugin.nemo2 import ExactRatioPreTrainingDataModule

    recipe = llm.llama3_8b.pretrain_recipe(...)
    recipe.data = run.Config(
        ExactRatioPreTrainingDataModule, paths=PATHS, split=SPLIT,   # from nemo2_data.py
        seq_length=8192, global_batch_size=512, micro_batch_size=1,
        index_mapping_dir="/shared/index_cache",                     # every rank sees it
    )

Importing this module imports NeMo (``nemo-toolkit[llm]`` 2.7.x, the last line with
``nemo.collections.llm``).
"""

from __future__ import annotations

from typing import Any

from nemo.collections.llm.gpt.data.pre_training import PreTrainingDataModule

from regmix_plugin.megatron import use_exact_ratio_blending

__all__ = ["ExactRatioPreTrainingDataModule"]


class ExactRatioPreTrainingDataModule(PreTrainingDataModule):
    """NeMo 2's ``PreTrainingDataModule``, building exact-ratio blends in every rank."""

    def build(self, *args: Any, **kwargs: Any) -> None:
        """Switch exact ratios on in this process, then NeMo's own ``build``."""
        use_exact_ratio_blending()
        super().build(*args, **kwargs)
