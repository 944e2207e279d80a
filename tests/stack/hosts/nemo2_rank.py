"""What each rank of the NeMo 2 test runs (started by NeMo-Run's LocalExecutor under torchrun).

``build_in_rank(data, out)`` joins the gloo process group, builds the data module's datasets as
NeMo's ``setup`` does (``data.build(trainer_max_steps=..., ...)``) and writes
``<out>/rank<r>.json``: the blended dataset's class, its per-sample dataset ids and whether they
were loaded from the index cache.
"""

import json
from pathlib import Path

import numpy as np
import torch


def build_in_rank(data, out: str, max_steps: int = 20) -> None:
    torch.distributed.init_process_group("gloo")
    rank = torch.distributed.get_rank()
    data.build(
        trainer_max_steps=max_steps,
        trainer_val_check_interval=max_steps,
        trainer_limit_val_batches=1,
        trainer_limit_test_batches=1,
    )
    train = data._train_ds
    index = train.dataset_index
    result = {
        "rank": rank,
        "world_size": torch.distributed.get_world_size(),
        "class": type(train).__name__,
        "dataset_index": np.asarray(index).tolist(),
        "loaded_from_cache": isinstance(index, np.memmap),
        "weights": [float(w) for w in train.weights],
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
