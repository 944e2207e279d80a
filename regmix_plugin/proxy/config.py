"""The ``proxy:`` section of a study config.

Example (every key optional except ``vocab_size``)::

    proxy:
      preset: tiny            # tiny | cpu-small | 1m | 60m
      model: {hidden_size: 96}  # override fields of the preset
      vocab_size: 64          # the tokenizer's vocabulary (token ids must be below it)
      seq_length: 128
      num_tokens: 65536       # training tokens (rounded down to whole global batches)
      micro_batch_size: 8
      global_batch_size: 16
      lr: 1.0e-3
      schedule: constant      # warmup then constant (the paper), or cosine
      split: "90,10,0"        # per prefix: train, validation, test shares
      num_eval_tokens: 8192   # validation tokens per domain and per target set
      targets: {pile_cc: [data/pile_cc_val_text_document]}
      device: auto            # auto | cpu | cuda
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from regmix_plugin.proxy.presets import ModelPreset, resolve_preset
from regmix_plugin.splits import parse_split as split_shares


def parse_split(split: str) -> tuple[float, float, float]:
    """A proxy's split: the shared grammar (:func:`regmix_plugin.splits.parse_split`), and
    proxies need both a training and a validation part."""
    values = split_shares(split)
    if values[0] <= 0 or values[1] <= 0:
        raise ValueError(
            f"split {split!r} leaves no {'training' if values[0] <= 0 else 'validation'} part; "
            "proxies need both, for example '98,2,0'"
        )
    return values


@dataclass(kw_only=True, frozen=True)
class ProxyConfig:
    """How one proxy model is built, trained and evaluated (YAML section ``proxy``)."""

    vocab_size: int
    """Size of the tokenizer's vocabulary; every token id in the data must be below it."""
    preset: str = "tiny"
    """Model shape: ``tiny`` (tests, quickstart), ``cpu-small`` (CPU benchmark), ``1m`` and
    ``60m`` (the paper)."""
    model: dict[str, int | bool] = field(default_factory=dict)
    """Overrides of the preset's fields (``num_layers``, ``hidden_size``, ...)."""
    seq_length: int = 128
    """Tokens per training sample."""
    num_tokens: int = 65_536
    """Training tokens; the run takes ``num_tokens // (global_batch_size * seq_length)`` steps."""
    micro_batch_size: int = 8
    """Samples per forward pass on each rank."""
    global_batch_size: int = 16
    """Samples per optimizer step over all ranks (gradient accumulation fills the gap)."""
    lr: float = 1e-3
    """Peak learning rate of AdamW."""
    min_lr_ratio: float = 0.1
    """With ``schedule: cosine``, the final learning rate as a fraction of ``lr``."""
    schedule: Literal["constant", "cosine"] = "constant"
    """After the linear warmup: constant (as in the paper) or cosine decay to ``min_lr_ratio``."""
    warmup_fraction: float = 0.05
    """Share of the training steps spent warming the learning rate up linearly from 0."""
    weight_decay: float = 0.1
    """AdamW weight decay (not applied to norms)."""
    adam_beta1: float = 0.9
    """AdamW beta1."""
    adam_beta2: float = 0.95
    """AdamW beta2."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 turns clipping off."""
    seed: int = 1234
    """Seed of the model's initial weights and of the training data order."""
    split: str = "98,2,0"
    """Train/validation/test shares of the documents of every prefix (Megatron's ``--split``)."""
    num_eval_tokens: int = 16_384
    """Held-out tokens per domain and per target set; the same for every proxy."""
    eval_seed: int = 1234
    """Seed that picks the evaluation samples; keep it fixed across a sweep."""
    targets: dict[str, list[str]] = field(default_factory=dict)
    """Extra evaluation sets: name -> Megatron prefixes (relative to the config file)."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """``auto`` trains on CUDA when it is available, else on the CPU."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto``: bf16 autocast on CUDA, fp32 on the CPU."""
    transformer_impl: Literal["auto", "local", "transformer_engine"] = "local"
    """Layer spec: ``local`` (pure PyTorch); ``auto`` takes Transformer Engine on CUDA when it is
    installed; ``transformer_engine`` requires it."""
    attention: Literal["sdpa", "megatron"] = "sdpa"
    """Core attention of the local spec: PyTorch's fused SDPA, or megatron-core's unfused one."""
    num_threads: int = 0
    """CPU threads for torch; 0 keeps ``OMP_NUM_THREADS`` (or torch's default)."""
    log_interval: int = 10
    """Steps between points of the training-loss curve (each the mean over its interval)."""
    checkpoint_interval: int = 100
    """Steps between checkpoints in ``<out>/checkpoint/``; 0 saves none until the end."""
    keep_checkpoint: bool = True
    """Keep the final checkpoint beside ``metrics.json``; false deletes it once they exist."""
    eval_cache_dir: str | None = None
    """Folder of the evaluation-index caches, shared by every proxy of the study (built once,
    under a file lock); relative to the config file. None: ``<run_dir>/cache/eval``."""

    def __post_init__(self) -> None:
        positive = {
            "vocab_size": self.vocab_size,
            "seq_length": self.seq_length,
            "num_tokens": self.num_tokens,
            "micro_batch_size": self.micro_batch_size,
            "global_batch_size": self.global_batch_size,
            "num_eval_tokens": self.num_eval_tokens,
            "log_interval": self.log_interval,
        }
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        for name in ("num_threads", "checkpoint_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.seq_length < 2:
            raise ValueError(f"seq_length must be at least 2, got {self.seq_length}")
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of "
                f"micro_batch_size {self.micro_batch_size}"
            )
        if self.num_tokens < self.tokens_per_step:
            raise ValueError(
                f"num_tokens {self.num_tokens} is less than one step of global_batch_size x "
                f"seq_length = {self.tokens_per_step} tokens; raise num_tokens or lower the batch"
            )
        if self.num_eval_tokens < self.seq_length + 1:
            raise ValueError(
                f"num_eval_tokens {self.num_eval_tokens} is less than one sample of "
                f"seq_length + 1 = {self.seq_length + 1} tokens"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be >= 0")
        parse_split(self.split)
        for name, prefixes in self.targets.items():
            if not prefixes:
                raise ValueError(f"targets.{name} lists no prefixes; give at least one")
        self.model_preset()  # unknown presets and bad overrides fail here, not mid-run

    @property
    def tokens_per_step(self) -> int:
        """Tokens consumed by one optimizer step."""
        return self.global_batch_size * self.seq_length

    @property
    def num_steps(self) -> int:
        """Optimizer steps of the run."""
        return self.num_tokens // self.tokens_per_step

    @property
    def num_warmup_steps(self) -> int:
        """Steps of linear warmup."""
        return int(self.warmup_fraction * self.num_steps)

    def model_preset(self) -> ModelPreset:
        """The model shape: the preset with ``model`` overrides applied."""
        return resolve_preset(self.preset, self.model)
