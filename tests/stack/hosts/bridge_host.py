"""A Megatron-Bridge training script's data step with regmix's provider (2 ranks, gloo, CPU).

Sets ``cfg.dataset`` to ``ExactRatioGPTDatasetProvider.from_emitted(<emit folder>)`` and builds
the datasets through Bridge's own functions: ``get_dataset_provider(cfg.dataset)`` (its
``DatasetProvider`` route), the tokenizer bound as Bridge's setup binds it, and
``loaders.build_train_valid_test_datasets(cfg, provider)``. Writes ``<out>/rank<r>.json``.
Uses the Transformer Engine import stand-in of ``te_standin.py`` (see there).

    python hosts/bridge_host.py --emitted DIR --cache DIR --out DIR
"""

import argparse
import inspect
import json
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import te_standin
import torch

te_standin.install()

from megatron.bridge.data.loaders import build_train_valid_test_datasets  # noqa: E402
from megatron.bridge.data.utils import get_dataset_provider  # noqa: E402
from megatron.bridge.training.config import TrainingConfig  # noqa: E402
from megatron.bridge.training.tokenizers.config import TokenizerConfig  # noqa: E402
from megatron.bridge.training.tokenizers.tokenizer import build_tokenizer  # noqa: E402
from megatron.training.config import ValidationConfig  # noqa: E402

from regmix_plugin.bridge import ExactRatioGPTDatasetProvider  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--emitted", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()

    dataset = ExactRatioGPTDatasetProvider.from_emitted(
        args.emitted, sequence_length=8, path_to_cache=args.cache, num_workers=0
    )
    # The fields of a ConfigContainer that Bridge's dataset building reads.
    cfg = SimpleNamespace(
        train=TrainingConfig(train_iters=20, global_batch_size=12, micro_batch_size=12),
        validation=ValidationConfig(eval_iters=1, eval_interval=10),
        dataset=dataset,
    )
    tokenizer = build_tokenizer(TokenizerConfig(tokenizer_type="NullTokenizer", vocab_size=128))
    provider = get_dataset_provider(cfg.dataset)
    if "tokenizer" in inspect.signature(provider).parameters:  # as Bridge's setup binds it
        provider = partial(provider, tokenizer=tokenizer)
    train, valid, test = build_train_valid_test_datasets(cfg, provider)

    index = train.dataset_index
    result = {
        "rank": rank,
        "class": type(train).__name__,
        "valid_class": type(valid).__name__,
        "test": None if test is None else type(test).__name__,
        "dataset_index": np.asarray(index).tolist(),
        "loaded_from_cache": isinstance(index, np.memmap),
        "prefixes": [d.dataset_path for d in train.datasets],
        "weights": list(train.weights),
        "valid_prefix": getattr(valid, "dataset_path", None),
        "token0": int(train[0]["tokens"][0]),
    }
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
