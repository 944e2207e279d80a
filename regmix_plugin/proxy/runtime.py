"""Process group, device, precision and threads for one proxy training.

Under ``torchrun`` (``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in the environment) the process group
is initialised from those variables: NCCL on CUDA, gloo on the CPU. Otherwise it is a world of
one on an in-process store, so many proxies can run on one machine at once with no port to pick.
Whatever :func:`proxy_runtime` set up it tears down on exit, Megatron's ``parallel_state``
included, so that one process can train several proxies in a row.

:func:`planned_placement` says, without torch, the device and precision that ``auto`` will
resolve to for a proxy given ``N`` devices by its launcher; the sweep fingerprints it, so CPU
and GPU results never mix silently in one sweep. torch is imported only inside functions.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from regmix_plugin.errors import ConfigError
from regmix_plugin.proxy.config import ProxyConfig

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

#: Timeout of the process group's collectives. Datasets are built before it exists (ranks
#: coordinate through file locks, see ``proxy.data``), so this only bounds a hung collective.
PROCESS_GROUP_TIMEOUT = datetime.timedelta(minutes=30)

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class Runtime:
    """Where and how this process trains."""

    device: torch.device
    rank: int
    world_size: int
    dtype: torch.dtype
    """The autocast dtype: ``torch.bfloat16``, or ``torch.float32`` for no autocast."""

    @property
    def is_main(self) -> bool:
        """Whether this process writes the files."""
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager[object]:
        """Autocast for the forward pass when training in bf16, else a no-op."""
        import torch

        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)


def planned_placement(proxy: Mapping[str, Any] | None, num_devices: int) -> dict[str, str]:
    """``{"device": "cuda"|"cpu", "precision": "bf16"|"fp32"}`` a proxy will train with.

    ``proxy`` is the study's ``proxy:`` section as written (``auto`` values unresolved);
    ``num_devices`` the accelerators its launcher gives each proxy (0: none, the launcher hides
    the GPUs). Resolved as :func:`resolve_device` and :func:`resolve_dtype` will, without torch;
    ``proxy.device: cuda`` with no devices is a :class:`ConfigError` before anything launches.
    """
    section = dict(proxy or {})
    device = str(section.get("device", "auto"))
    precision = str(section.get("precision", "auto"))
    if device == "cuda" and num_devices == 0:
        raise ConfigError(
            "proxy.device is 'cuda' but the sweep gives each proxy no GPU; set the launcher's "
            "GPUs per proxy (sweep.local.num_devices_per_proxy, sweep.slurm.num_gpus_per_task "
            "or sweep.nemo_run.num_gpus_per_node), or set proxy.device to 'auto' or 'cpu'"
        )
    resolved = "cpu" if device == "cpu" or num_devices == 0 else "cuda"
    if precision == "auto":
        precision = "bf16" if resolved == "cuda" else "fp32"
    return {"device": resolved, "precision": precision}


def is_main_process() -> bool:
    """Whether this process is rank 0 (under ``torchrun``: ``RANK``), the one that writes files."""
    return os.environ.get("RANK", "0") == "0"


def resolve_device(cfg: ProxyConfig) -> torch.device:
    """The device ``proxy.device`` asks for, on this process's local rank."""
    import torch

    has_cuda = torch.cuda.is_available()
    if cfg.device == "cuda" and not has_cuda:
        raise ConfigError(
            "proxy.device is 'cuda' but torch sees no CUDA device "
            f"(torch {torch.__version__}); set proxy.device to 'cpu' or 'auto'"
        )
    if cfg.device == "cpu" or not has_cuda:
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def resolve_dtype(cfg: ProxyConfig, device: torch.device) -> torch.dtype:
    """The autocast dtype for ``proxy.precision`` on ``device``."""
    import torch

    if cfg.precision == "fp32" or (cfg.precision == "auto" and device.type == "cpu"):
        return torch.float32
    return torch.bfloat16


@contextlib.contextmanager
def _threads(num_threads: int) -> Iterator[None]:
    import torch

    if num_threads <= 0:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _init_process_group(device: torch.device) -> bool:
    """Initialise torch.distributed unless the caller already did; True when we did."""
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if all(v in os.environ for v in _TORCHRUN_VARS):
        dist.init_process_group(backend, init_method="env://", timeout=PROCESS_GROUP_TIMEOUT)
    else:
        dist.init_process_group(
            backend,
            store=dist.HashStore(),
            rank=0,
            world_size=1,
            timeout=PROCESS_GROUP_TIMEOUT,
        )
    return True


@contextlib.contextmanager
def proxy_runtime(cfg: ProxyConfig) -> Iterator[Runtime]:
    """Set up (and afterwards tear down) everything a proxy training needs on this process."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state

    from regmix_plugin.proxy.cpu_compat import cpu_workarounds

    device = resolve_device(cfg)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    # init_process_group wraps sys.excepthook with a "[rankN]: " prefix on every call; restore it
    # at teardown so that training several proxies in one process does not stack the wrappers.
    excepthook = sys.excepthook
    owns_group = _init_process_group(device)
    owns_parallel_state = False
    try:
        if not parallel_state.model_parallel_is_initialized():
            parallel_state.initialize_model_parallel(1, 1)
            owns_parallel_state = True
        runtime = Runtime(
            device=device,
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            dtype=resolve_dtype(cfg, device),
        )
        log.debug("proxy runtime: %s", runtime)
        with _threads(cfg.num_threads), cpu_workarounds(device):
            yield runtime
    finally:
        if owns_parallel_state:
            parallel_state.destroy_model_parallel()
        if owns_group:
            dist.destroy_process_group()
            sys.excepthook = excepthook
