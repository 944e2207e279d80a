"""The workarounds megatron-core needs to train on a machine without CUDA, in one place.

megatron-core assumes a GPU in a few spots that a small CPU proxy reaches:

* rotary embeddings and the attention's global memory buffer call ``torch.cuda.current_device()``;
  while :func:`cpu_workarounds` is active that call returns ``"cpu"``;
* ``model_parallel_cuda_manual_seed`` calls ``torch.cuda.manual_seed`` (a no-op without CUDA),
  but only registers its RNG tracker states when told to reset and use the inference tracker;
  :func:`seed_model_parallel` does that on the CPU and the plain call on a GPU.

Nothing is patched at import; the patch is undone when the context exits.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch


def _cpu_current_device() -> str:
    return "cpu"


@contextlib.contextmanager
def cpu_workarounds(device: torch.device) -> Iterator[None]:
    """Let megatron-core run on ``device`` when it is the CPU; a no-op for CUDA devices."""
    if device.type != "cpu":
        yield
        return
    original = torch.cuda.current_device
    torch.cuda.current_device = _cpu_current_device  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.current_device = original


def seed_model_parallel(seed: int, device: torch.device) -> None:
    """Seed torch and megatron-core's model-parallel RNG tracker for ``device``."""
    from megatron.core.tensor_parallel.random import model_parallel_cuda_manual_seed

    torch.manual_seed(seed)
    if device.type == "cuda":
        model_parallel_cuda_manual_seed(seed)
        return
    kwargs = {"inference_rng_tracker": True}
    if "force_reset_rng" in inspect.signature(model_parallel_cuda_manual_seed).parameters:
        kwargs["force_reset_rng"] = True  # megatron-core >= 0.14
    model_parallel_cuda_manual_seed(seed, **kwargs)
