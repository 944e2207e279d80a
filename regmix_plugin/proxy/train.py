"""Train one proxy on one mixture and write its ``metrics.json``: ``regmix train-proxy``.

:func:`train_proxy` is the stage: study config + mixture weights in, metrics out. It

1. resolves the mixture into a Megatron blend through the domain catalogue (an unknown domain, or
   weights that do not sum to 1, is an error; nothing is renormalised);
2. skips the work when ``<out>/metrics.json`` already holds a complete result for the same
   mixture and config (same fingerprint);
3. trains a megatron-core ``GPTModel`` with AdamW on the exact-ratio blend, on the CPU (gloo) or
   on GPUs (NCCL, bf16, data parallel under ``torchrun``), checkpointing to
   ``<out>/checkpoint/state.pt`` and resuming from it when rerun;
4. evaluates the loss on every domain's validation split and every target set;
5. writes ``metrics.json`` atomically (rank 0 only).

Datasets are built before the process group exists, each under its cache folder's file lock
(:func:`regmix_plugin.proxy.data.cache_guard`): the evaluation indices once per study in a shared
folder, the training blend's in ``<out>/cache``, which is removed when the proxy ends (done or
failed; a killed proxy keeps it for its resume). A proxy whose training or evaluation loss is
NaN or infinite has diverged: it writes ``metrics.json`` with ``complete: false`` and the
``failure``, and raises :class:`ProxyDiverged`, so the sweep records a failed run with that
reason. Under ``torchrun`` each rank dies with its agent
(:func:`regmix_plugin.lifetime.guard_torchrun_rank`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.blending.phases import BlendSchedule
from regmix_plugin.config import to_dict
from regmix_plugin.domains import Catalogue
from regmix_plugin.errors import ConfigError, DataError, RegMixError
from regmix_plugin.fingerprint import fingerprint as content_fingerprint
from regmix_plugin.io import append_json_line, atomic_open, atomic_write_json, read_json_lines
from regmix_plugin.layout import METRICS_FILE, TIMINGS_FILE
from regmix_plugin.proxy.config import ProxyConfig
from regmix_plugin.schedules import is_schedule, proxy_schedule
from regmix_plugin.tables import read_table

log = logging.getLogger(__name__)

#: Bumped when a change to the training or evaluation changes the numbers for a given config.
TRAINER_VERSION = 1
CHECKPOINT_FILE = "checkpoint/state.pt"

#: Keys of ``proxy`` that do not change the results (left out of the fingerprint).
_NON_RESULT_KEYS = (
    "num_threads",
    "log_interval",
    "checkpoint_interval",
    "keep_checkpoint",
    "eval_cache_dir",
)

#: Micro-batches prepared ahead of the training thread on CUDA (stacked, checked, pinned).
PREFETCH = 4


class ProxyDiverged(RegMixError):
    """A proxy's loss became NaN or infinite: the run failed, and says why."""


#: What a proxy imports on its way (ours import megatron-core inside functions): a serving sweep
#: worker imports them once and forks each proxy from itself (:mod:`regmix_plugin.sweep.worker`).
PRELOAD_MODULES = (
    "torch",
    "torch.distributed",
    "megatron.core.datasets.blended_megatron_dataset_builder",
    "megatron.core.datasets.gpt_dataset",
    "megatron.core.models.gpt",
    "megatron.core.models.gpt.gpt_layer_specs",
    "megatron.core.parallel_state",
    "megatron.core.tensor_parallel.random",
    "megatron.core.transformer",
    "regmix_plugin.cli",
    "regmix_plugin.commands.study_stages",
    "regmix_plugin.megatron",
    "regmix_plugin.proxy.cpu_compat",
    "regmix_plugin.proxy.data",
    "regmix_plugin.proxy.model",
    "regmix_plugin.proxy.runtime",
)


def preload_modules() -> None:
    """Import :data:`PRELOAD_MODULES` (nothing is initialised: no thread, no device)."""
    import importlib

    for name in PRELOAD_MODULES:
        importlib.import_module(name)


def fingerprint(
    cfg: ProxyConfig, catalogue: Catalogue, weights: Mapping[str, float], mixture_id: str
) -> str:
    """A hash of everything that determines a proxy's results (config, mixture, data sizes)."""
    proxy = {k: v for k, v in to_dict(cfg).items() if k not in _NON_RESULT_KEYS}
    identity = {
        "trainer_version": TRAINER_VERSION,
        "mixture_id": mixture_id,
        "weights": [[n, float(weights.get(n, 0.0))] for n in catalogue.names],
        "proxy": proxy,
        "domains": [
            [d.name, list(zip(d.prefixes, d.prefix_tokens, strict=True))] for d in catalogue.domains
        ],
    }
    if is_schedule(weights):  # a phase schedule (regmix_plugin.schedules): its columns too
        identity["schedule"] = [[k, float(v)] for k, v in weights.items()]
    return content_fingerprint(identity)


def completed_metrics(out_dir: str | Path, mixture_id: str, fp: str) -> dict[str, Any] | None:
    """The metrics in ``out_dir`` when they are complete for this mixture and fingerprint."""
    path = Path(out_dir) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        isinstance(metrics, dict)
        and metrics.get("mixture_id") == mixture_id
        and metrics.get("fingerprint") == fp
        and metrics.get("complete") is True
    ):
        return metrics
    return None


def train_proxy(
    cfg: ProxyConfig,
    catalogue: Catalogue,
    weights: Mapping[str, float],
    mixture_id: str,
    out_dir: str | Path,
    *,
    eval_cache: Path | None = None,
) -> dict[str, Any]:
    """Train (or resume, or skip) the proxy of one mixture; return its metrics.

    ``cfg`` is the study's ``proxy`` section (target paths absolute), ``catalogue`` its domains;
    ``weights`` names every domain and sums to 1. ``eval_cache`` is the folder of the
    evaluation indices shared by the proxies of a study (``proxy.eval_cache_dir``, else
    ``RunLayout.eval_cache``); None: ``<out_dir>/cache/eval``.
    """
    weights = {str(k): float(v) for k, v in weights.items()}
    schedule = None
    if is_schedule(weights):  # one mixture per phase, served by one exact-ratio schedule
        num_samples = cfg.num_steps * cfg.global_batch_size
        schedule = proxy_schedule(catalogue, weights, num_samples)
        avg = schedule.average_weights(num_samples)
        blend = list(zip(schedule.prefixes, avg, strict=True))
    else:
        blend = catalogue.blend(weights)  # unknown/missing domains and bad sums fail here
    out = Path(out_dir)
    fp = fingerprint(cfg, catalogue, weights, mixture_id)
    done = completed_metrics(out, mixture_id, fp)
    if done is not None:
        log.info("%s: complete metrics for mixture %s exist, nothing to do", out, mixture_id)
        return done

    from regmix_plugin.lifetime import guard_torchrun_rank

    guard_torchrun_rank()
    train_cache = out / "cache"
    try:
        result = _train_and_evaluate(
            cfg, catalogue, weights, blend, mixture_id, out, fp, train_cache, eval_cache, schedule
        )
    except ProxyDiverged as exc:
        _write_failure(out, mixture_id, fp, str(exc))
        raise
    finally:
        # The training blend's caches serve this proxy only (its resume after a kill, which
        # never reaches this line); done or failed, they go.
        shutil.rmtree(train_cache, ignore_errors=True)
    timing = proxy_timings(out)
    log.info(
        "%s: mixture %s trained on %d tokens in %.1f s (%.0f tokens/s)",
        out,
        mixture_id,
        result["num_tokens_trained"],
        timing.get("wall_time_s", math.nan),
        timing.get("tokens_per_second", math.nan),
    )
    return result


def proxy_timings(out_dir: str | Path) -> dict[str, Any]:
    """The last training's timings of a proxy folder (``wall_time_s``, ``train_time_s``,
    ``tokens_per_second``), from its timings log: ``metrics.json`` holds no timings, so two
    trainings of the same proxy write the same bytes. Empty when none was logged."""
    lines = [r for r in read_json_lines(Path(out_dir) / TIMINGS_FILE) if r.get("event") == "proxy"]
    return dict(lines[-1]) if lines else {}


def _write_failure(out: Path, mixture_id: str, fp: str, failure: str) -> None:
    """An incomplete ``metrics.json`` that says why the proxy failed (rank 0)."""
    from regmix_plugin.proxy.runtime import is_main_process

    if is_main_process():
        atomic_write_json(
            out / METRICS_FILE,
            {"mixture_id": mixture_id, "fingerprint": fp, "complete": False, "failure": failure},
        )


def _train_and_evaluate(
    cfg: ProxyConfig,
    catalogue: Catalogue,
    weights: dict[str, float],
    blend: list[tuple[str, float]],
    mixture_id: str,
    out: Path,
    fp: str,
    train_cache: Path,
    eval_cache: Path | None,
    schedule: BlendSchedule | None = None,
) -> dict[str, Any]:
    """Build the data (under the cache locks), train, evaluate, write ``metrics.json``."""
    from regmix_plugin.proxy.data import (
        build_eval_sets,
        build_train_data,
        cache_guard,
        check_eval_data,
    )
    from regmix_plugin.proxy.runtime import proxy_runtime

    started = time.perf_counter()
    check_eval_data(cfg, catalogue)  # before any cache folder is made
    with cache_guard(train_cache):
        train_data = build_train_data(cfg, catalogue, blend, train_cache, schedule=schedule)
    if cfg.eval_cache_dir is not None:
        eval_cache = Path(cfg.eval_cache_dir)
    elif eval_cache is None:
        eval_cache = out / "cache" / "eval"
    with cache_guard(eval_cache):
        eval_sets = build_eval_sets(cfg, catalogue, eval_cache)
    with proxy_runtime(cfg) as rt:
        trainer = _Trainer(cfg, rt, train_data, out / CHECKPOINT_FILE, fp, out / TIMINGS_FILE)
        trainer.train()
        metrics_values = {s.key: trainer.evaluate(s) for s in eval_sets}
        diverged = {k: v for k, v in metrics_values.items() if not math.isfinite(v)}
        if diverged:
            shown = ", ".join(f"{k} = {v}" for k, v in sorted(diverged.items()))
            raise ProxyDiverged(
                f"diverged: the evaluation loss is not finite ({shown}); lower proxy.lr or "
                "check the data of those domains"
            )
        result = {
            "mixture_id": mixture_id,
            "weights": dict(weights) if schedule else {n: weights[n] for n in catalogue.names},
            "num_tokens_trained": trainer.step * cfg.tokens_per_step,
            "metrics": metrics_values,
            "train_loss": trainer.curve,
            "realised_tokens": trainer.realised_tokens(catalogue.names),
            "realised_samples": {
                p: int(n) for p, n in zip(train_data.prefixes, trainer.counts, strict=True)
            },
            "blend": [[p, w] for p, w in blend],
            "num_steps": trainer.step,
            "num_eval_tokens": {s.key: s.num_samples * cfg.seq_length for s in eval_sets},
            "num_parameters": trainer.num_parameters,
            "resumed_from_step": trainer.resumed_from,
            "device": str(rt.device),
            "device_name": _device_name(rt.device),
            "world_size": rt.world_size,
            "precision": str(rt.dtype).replace("torch.", ""),
            "layer_spec": trainer.layer_spec,
            "config": to_dict(cfg),
            "fingerprint": fp,
            "trainer_version": TRAINER_VERSION,
            "complete": True,
        }
        if rt.is_main:
            # Timings go to the run's timings log, never into metrics.json (byte-identical).
            append_json_line(
                out / TIMINGS_FILE,
                {
                    "event": "proxy",
                    "mixture_id": mixture_id,
                    "wall_time_s": trainer.elapsed_before + time.perf_counter() - started,
                    "train_time_s": trainer.train_time_s,
                    "tokens_per_second": trainer.step
                    * cfg.tokens_per_step
                    / max(trainer.train_time_s, 1e-9),
                    "resumed_from_step": trainer.resumed_from,
                },
            )
            atomic_write_json(out / METRICS_FILE, result)
            if not cfg.keep_checkpoint:
                (out / CHECKPOINT_FILE).unlink(missing_ok=True)
    return result


def _device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return str(torch.cuda.get_device_name(device))
    return platform.processor() or platform.machine()


def _lr_factor(cfg: ProxyConfig, step: int) -> float:
    """Learning rate at ``step`` as a fraction of ``cfg.lr``: linear warmup, then the schedule."""
    warmup = cfg.num_warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, cfg.num_steps - warmup)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


class _Trainer:
    """The model, optimizer and loop of one proxy; its state is what the checkpoint holds."""

    def __init__(
        self,
        cfg: ProxyConfig,
        rt: Any,
        data: Any,
        checkpoint: Path,
        fp: str,
        timings: Path | None = None,
    ) -> None:
        import torch

        from regmix_plugin.proxy.cpu_compat import seed_model_parallel
        from regmix_plugin.proxy.model import build_model, layer_spec_name, uses_fused_loss

        self.cfg, self.rt, self.data, self.checkpoint_path, self.fp = cfg, rt, data, checkpoint, fp
        # The run's timings log: a checkpoint's times go there, not into the checkpoint.
        self.timings_path = timings
        per_rank = cfg.micro_batch_size * rt.world_size
        if cfg.global_batch_size % per_rank:
            raise ConfigError(
                f"proxy.global_batch_size {cfg.global_batch_size} is not a multiple of "
                f"micro_batch_size x data-parallel ranks = {cfg.micro_batch_size} x "
                f"{rt.world_size}; change proxy.global_batch_size or proxy.micro_batch_size"
            )
        self.num_micro = cfg.global_batch_size // per_rank
        seed_model_parallel(cfg.seed, rt.device)
        self.layer_spec = layer_spec_name(cfg, rt.device)
        self.fused_loss = uses_fused_loss(rt.device, rt.dtype)
        self.model = build_model(cfg.model_preset(), cfg, rt.device, fused_loss=self.fused_loss)
        self.num_parameters = int(sum(p.numel() for p in self.model.parameters()))
        decay = [p for p in self.model.parameters() if p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(cfg.adam_beta1, cfg.adam_beta2),
            fused=rt.device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: _lr_factor(cfg, step)
        )
        self.forward_model: Any = self.model
        if rt.world_size > 1:
            self.forward_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None
            )
        self.step = 0
        self.resumed_from = 0
        self.curve: list[list[float]] = []
        self.interval_sum = 0.0
        self.interval_steps = 0
        # Step losses of this rank not yet added to interval_sum: summed on the device, read
        # (and all-reduced) only at log points and checkpoints, not every step.
        self._pending_loss = torch.zeros((), dtype=torch.float64, device=rt.device)
        self.counts = np.zeros(len(data.prefixes), dtype=np.int64)
        self._local_counts = np.zeros(len(data.prefixes), dtype=np.int64)
        self.train_time_s = 0.0
        self.elapsed_before = 0.0
        self.train_time_here = 0.0
        self.tokens_trained_here = 0
        self._started = time.perf_counter()
        self._load_checkpoint()

    # -- checkpoints ------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fp,
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "curve": self.curve,
            "interval": [self.interval_sum, self.interval_steps],
            "counts": self.counts.tolist(),
        }

    def save_checkpoint(self) -> None:
        """Write the state atomically (rank 0); every rank syncs its sample counts first."""
        import torch

        self._sync_counts()
        self._flush_loss()
        if self.rt.is_main:
            with atomic_open(self.checkpoint_path, "wb") as f:
                torch.save(self._state(), f)
            if self.timings_path is not None:
                append_json_line(
                    self.timings_path,
                    {
                        "event": "checkpoint",
                        "step": self.step,
                        "train_time_s": self.train_time_s,
                        "elapsed_s": self.elapsed_before + time.perf_counter() - self._started,
                    },
                )

    def _load_checkpoint(self) -> None:
        import torch

        if self.rt.is_main and self.checkpoint_path.parent.is_dir():
            # Temporary files of a write that a kill interrupted (atomic_open's naming).
            for leftover in self.checkpoint_path.parent.glob(f".{self.checkpoint_path.name}.*.tmp"):
                leftover.unlink(missing_ok=True)
        if not self.checkpoint_path.is_file():
            return
        try:
            state = torch.load(
                self.checkpoint_path, map_location=self.rt.device, weights_only=False
            )
        except Exception as exc:  # a foreign or damaged file: say which, and how to go on
            raise DataError(
                f"{self.checkpoint_path} cannot be read ({type(exc).__name__}: {exc}); delete it "
                "to train this proxy from the start"
            ) from None
        if state.get("fingerprint") != self.fp:
            log.warning(
                "%s belongs to another config or mixture (fingerprint %s, this run %s); "
                "starting from scratch",
                self.checkpoint_path,
                state.get("fingerprint"),
                self.fp,
            )
            return
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = self.resumed_from = int(state["step"])
        self.curve = [list(p) for p in state["curve"]]
        self.interval_sum, self.interval_steps = state["interval"]
        self.counts = np.asarray(state["counts"], dtype=np.int64)
        self.train_time_s, self.elapsed_before = self._checkpoint_times(state)
        log.info("resuming from %s at step %d", self.checkpoint_path, self.step)

    def _checkpoint_times(self, state: dict[str, Any]) -> tuple[float, float]:
        """(training seconds, wall seconds) up to the loaded checkpoint: from the timings log
        (the checkpoint holds no times, so it is byte-identical), else 0 (times are a log)."""
        if "train_time_s" in state:  # checkpoints written before the timings log
            return float(state["train_time_s"]), float(state.get("elapsed_s", 0.0))
        logged = [] if self.timings_path is None else read_json_lines(self.timings_path)
        lines = [
            r for r in logged if r.get("event") == "checkpoint" and r.get("step") == state["step"]
        ]
        if not lines:
            return 0.0, 0.0
        return float(lines[-1]["train_time_s"]), float(lines[-1]["elapsed_s"])

    # -- training ---------------------------------------------------------------------------

    def _sync_counts(self) -> None:
        import torch
        import torch.distributed as dist

        if self.rt.world_size > 1:
            # On the process group's device: NCCL serves only CUDA tensors.
            local = torch.from_numpy(self._local_counts.copy()).to(self.rt.device)
            dist.all_reduce(local)
            self.counts += local.cpu().numpy()
        else:
            self.counts += self._local_counts
        self._local_counts[:] = 0

    def _flush_loss(self) -> None:
        """Add the pending step losses (mean over ranks) to ``interval_sum``."""
        import torch.distributed as dist

        if self.rt.world_size > 1:
            dist.all_reduce(self._pending_loss)
            self._pending_loss /= self.rt.world_size
        self.interval_sum += float(self._pending_loss)
        self._pending_loss.zero_()

    def _host_batch(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack samples and check their token ids on the host (pinned memory on CUDA)."""
        import torch

        batch: dict[str, Any] = {}
        for key in ("tokens", "labels", "loss_mask", "position_ids"):
            batch[key] = torch.stack([s[key] for s in samples])
        top = int(max(batch["tokens"].max(), batch["labels"].max()))
        if top >= self.cfg.vocab_size:
            raise DataError(
                f"the data holds token id {top}, but proxy.vocab_size is {self.cfg.vocab_size}; "
                "set proxy.vocab_size to the tokenizer's vocabulary size (above every token id)"
            )
        if self.rt.device.type == "cuda":
            batch = {k: v.pin_memory() for k, v in batch.items()}
        return batch

    def _to_device(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v.to(self.rt.device, non_blocking=True) for k, v in batch.items()}

    def _collate(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Stack samples, check their token ids on the host, move them to the device."""
        return self._to_device(self._host_batch(samples))

    def _micro_batches(self) -> Iterator[tuple[dict[str, Any], list[int]]]:
        """(host batch, dataset ids) of every remaining micro-batch of this rank, in order."""
        cfg, rt = self.cfg, self.rt
        per_rank = cfg.global_batch_size // rt.world_size
        for step in range(self.step, cfg.num_steps):
            for m in range(self.num_micro):
                first = step * cfg.global_batch_size + rt.rank * per_rank + m * cfg.micro_batch_size
                samples = [self.data.dataset[i] for i in range(first, first + cfg.micro_batch_size)]
                yield self._host_batch(samples), [int(s["dataset_id"]) for s in samples]

    def _batches(self) -> Iterator[tuple[dict[str, Any], list[int]]]:
        """The micro-batches; on CUDA prepared by a thread ``PREFETCH`` ahead of training."""
        if self.rt.device.type != "cuda":
            yield from self._micro_batches()
            return
        ready: queue.Queue[Any] = queue.Queue(maxsize=PREFETCH)
        stop = threading.Event()

        def _offer(item: Any) -> bool:
            while not stop.is_set():
                try:
                    ready.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def _fill() -> None:
            try:
                for item in self._micro_batches():
                    if not _offer(item):
                        return
                _offer(None)
            except BaseException as exc:  # handed to the training thread
                _offer(exc)

        thread = threading.Thread(target=_fill, name="proxy-prefetch", daemon=True)
        thread.start()
        try:
            while (item := ready.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()

    def _loss(self, model: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
        """(sum of token losses, number of tokens) of a batch."""
        from regmix_plugin.proxy.model import token_losses

        with self.rt.autocast():
            per_token = token_losses(
                model,
                batch["tokens"],
                batch["position_ids"],
                self._attention_mask(batch["tokens"].shape[1]),
                batch["labels"],
                fused=self.fused_loss,
            )
        mask = batch["loss_mask"].float()
        return (per_token.float() * mask).sum(), mask.sum()

    def _attention_mask(self, seq_length: int) -> Any:
        import torch

        cached = getattr(self, "_mask", None)
        if cached is None or cached.shape[-1] != seq_length:
            ones = torch.ones(1, 1, seq_length, seq_length, dtype=torch.bool, device=self.rt.device)
            self._mask = torch.triu(ones, diagonal=1)  # True = masked (the future)
        return self._mask

    def train(self) -> None:
        """Run the remaining steps."""
        import torch

        cfg, rt = self.cfg, self.rt
        self.model.train()
        batches = self._batches()
        while self.step < cfg.num_steps:
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = torch.zeros((), device=rt.device)
            for m in range(self.num_micro):
                host_batch, ids = next(batches)
                np.add.at(self._local_counts, ids, 1)
                batch = self._to_device(host_batch)
                sync = m == self.num_micro - 1 or rt.world_size == 1
                ctx = contextlib.nullcontext() if sync else self.forward_model.no_sync()
                with ctx:
                    loss_sum, n = self._loss(self.forward_model, batch)
                    loss = loss_sum / n
                    (loss / self.num_micro).backward()
                step_loss += loss.detach() / self.num_micro
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            self._pending_loss += step_loss.double()
            self.interval_steps += 1
            dt = time.perf_counter() - t0
            self.train_time_s += dt
            self.train_time_here += dt
            self.tokens_trained_here += cfg.tokens_per_step
            if self.interval_steps == cfg.log_interval or self.step == cfg.num_steps:
                self._flush_loss()
                mean = self.interval_sum / self.interval_steps
                if not math.isfinite(mean):
                    raise ProxyDiverged(
                        f"diverged: the training loss is {mean} at step {self.step} of "
                        f"{cfg.num_steps}; lower proxy.lr (now {cfg.lr}) or raise "
                        "proxy.warmup_fraction"
                    )
                self.curve.append([self.step, mean])
                self.interval_sum, self.interval_steps = 0.0, 0
                log.info(
                    "step %d/%d  loss %.4f  lr %.2e  %.0f tokens/s",
                    self.step,
                    cfg.num_steps,
                    mean,
                    self.scheduler.get_last_lr()[0],
                    self.tokens_trained_here / max(self.train_time_here, 1e-9),
                )
            if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                self.save_checkpoint()
        self.save_checkpoint()

    def realised_tokens(self, names: list[str]) -> dict[str, int]:
        """Tokens trained per domain, from the ``dataset_id`` of every consumed sample."""
        out = dict.fromkeys(names, 0)
        for domain, n in zip(self.data.prefix_domains, self.counts.tolist(), strict=True):
            out[domain] += int(n) * self.cfg.seq_length
        return out

    def evaluate(self, eval_set: Any) -> float:
        """Mean token loss over an evaluation set (sharded over ranks)."""
        import torch
        import torch.distributed as dist

        refs = eval_set.sample_refs()[self.rt.rank :: self.rt.world_size]
        total = torch.zeros(2, dtype=torch.float64, device=self.rt.device)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, len(refs), self.cfg.micro_batch_size):
                chunk = refs[i : i + self.cfg.micro_batch_size]
                batch = self._collate([eval_set.parts[k][j] for k, j in chunk])
                loss_sum, n = self._loss(self.model, batch)
                total[0] += loss_sum.double()
                total[1] += n.double()
        self.model.train()
        if self.rt.world_size > 1:
            dist.all_reduce(total)
        return float(total[0] / total[1])


def mixture_weights(
    path: str | Path, mixture_id: str, domains: list[str] | None = None
) -> dict[str, float]:
    """The weights of one row of a mixtures table (checked whole by the one validator, against
    ``domains`` when given)."""
    from regmix_plugin.tables import check_weights_table

    table = read_table(path)
    check_weights_table(table, path, domains=domains)
    if mixture_id not in table.ids:
        raise DataError(f"{path}: id {mixture_id!r} not found in the table ({len(table.ids)} rows)")
    row = table.row(mixture_id)
    return {name: float(w) for name, w in zip(table.columns, row, strict=True)}
