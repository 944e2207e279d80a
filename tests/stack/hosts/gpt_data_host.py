"""A host training script's data step, as Megatron-LM's pretrain_gpt.py does it (no regmix import).

Started by torchrun (gloo): every rank builds the GPT datasets of a blend with megatron-core's
``BlendedMegatronDatasetBuilder`` (rank 0 first, then the others after the builder's barrier) and
writes what it got to ``<out>/rank<r>.json``: the blended dataset's class, its per-sample dataset
ids, and whether its index arrays were loaded from the cache (memory-mapped) or built in memory.

    python hosts/gpt_data_host.py --blend blend.json --cache DIR --samples N --out DIR
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig
from megatron.core.tokenizers.text.libraries.null_tokenizer import NullTokenizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blend", required=True)
    parser.add_argument("--cache", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    blend = json.loads(Path(args.blend).read_text())
    config = GPTDatasetConfig(
        random_seed=1234,
        sequence_length=8,
        blend=(blend["prefixes"], blend["weights"]),
        split="100,0,0",
        path_to_cache=args.cache,
        tokenizer=NullTokenizer(vocab_size=128),
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
    )
    train, _, _ = BlendedMegatronDatasetBuilder(
        GPTDataset, [args.samples, 0, 0], lambda: True, config
    ).build()
    index = train.dataset_index
    result = {
        "rank": rank,
        "world_size": torch.distributed.get_world_size(),
        "class": type(train).__name__,
        "dataset_index": np.asarray(index).tolist(),
        "loaded_from_cache": isinstance(index, np.memmap),
        "first_sample_dataset": int(train[0]["dataset_id"]),
        "pid": os.getpid(),
    }
    Path(args.out, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
